package pipeline

import (
	"net/http"
	"net/url"
	"time"

	"gatehouse.dev/pkg/pipeline/expr"
)

// A runCtx is the context policy expressions read.
var _ expr.Context = (*runCtx)(nil)

// Field returns a string member of context; it is absent (ok false) for a request without
// subscription, user or product.
func (c *runCtx) Field(f expr.Field) (string, bool) {
	r := c.req
	switch f {
	case expr.RequestID:
		return r.RequestID, true
	case expr.RequestIPAddress:
		return c.clientIP(), true
	case expr.SubscriptionID, expr.SubscriptionName, expr.SubscriptionKey:
		s := r.Subscription
		if s == nil {
			return "", false
		}
		switch f {
		case expr.SubscriptionID:
			return s.ID, true
		case expr.SubscriptionName:
			return s.Name, true
		}
		return s.Key, true
	case expr.UserID:
		if r.User == nil {
			return "", false
		}
		return r.User.ID, true
	case expr.ProductID, expr.ProductName:
		if r.Product == nil {
			return "", false
		}
		if f == expr.ProductID {
			return r.Product.ID, true
		}
		return r.Product.Name, true
	case expr.APIID:
		return r.API.ID, true
	case expr.APIName:
		return r.API.Name, true
	case expr.APIPath:
		return r.API.Path, true
	case expr.APIServiceURL:
		return r.API.ServiceURL, true
	case expr.OperationID:
		return r.Operation.ID, true
	case expr.OperationName:
		return r.Operation.Name, true
	case expr.OperationMethod:
		return r.Operation.Method, true
	case expr.OperationURLTemplate:
		return r.Operation.URLTemplate, true
	case expr.DeploymentGatewayID:
		return r.Deployment.GatewayID, true
	case expr.DeploymentRegion:
		return r.Deployment.Region, true
	case expr.DeploymentServiceName:
		return r.Deployment.ServiceName, true
	}
	return "", false
}

func (c *runCtx) Timestamp() time.Time      { return c.now }
func (c *runCtx) HTTP() *http.Request       { return c.req.HTTP }
func (c *runCtx) Header() http.Header       { return c.req.Header }
func (c *runCtx) Query() url.Values         { return c.req.Query }
func (c *runCtx) Variables() map[string]any { return c.req.Variables }
