package expr

import (
	"net/http"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// node is a compiled expression tree node.
type node interface {
	eval(c Context) (value, error)
}

// evalError is an expression failing at run time, APIM's ExpressionValueEvaluationFailure.
type evalError struct{ msg string }

func (e *evalError) Error() string { return e.msg }

var errNullRef = &evalError{"Object reference not set to an instance of an object."}

func typeError(op string, a, b value) error {
	return &evalError{"Operator '" + op + "' cannot be applied to operands of type '" + a.k.String() + "' and '" + b.k.String() + "'."}
}

type litNode struct{ v value }

func (n *litNode) eval(Context) (value, error) { return n.v, nil }

type interpNode struct{ parts []node }

func (n *interpNode) eval(c Context) (value, error) {
	var b strings.Builder
	for _, p := range n.parts {
		v, err := p.eval(c)
		if err != nil {
			return nullValue, err
		}
		b.WriteString(v.text())
	}
	return strValue(b.String()), nil
}

// evalPair evaluates a binary operator's operands, left first; the right one is not evaluated
// when the left fails.
func evalPair(c Context, ln, rn node) (l, r value, err error) {
	if l, err = ln.eval(c); err != nil {
		return nullValue, nullValue, err
	}
	if r, err = rn.eval(c); err != nil {
		return nullValue, nullValue, err
	}
	return l, r, nil
}

type concatNode struct{ l, r node }

func (n *concatNode) eval(c Context) (value, error) {
	l, r, err := evalPair(c, n.l, n.r)
	if err != nil {
		return nullValue, err
	}
	return concat(l, r), nil
}

func concat(l, r value) value {
	ls, rs := l.text(), r.text()
	switch {
	case ls == "":
		return strValue(rs)
	case rs == "":
		return strValue(ls)
	}
	return strValue(ls + rs)
}

// arithNode is an arithmetic or ordering operator on integers (and ordering on DateTime);
// "+" with a string operand found at run time concatenates.
type arithNode struct {
	op   string
	l, r node
}

func (n *arithNode) eval(c Context) (value, error) {
	l, r, err := evalPair(c, n.l, n.r)
	if err != nil {
		return nullValue, err
	}
	if n.op == "+" && (l.k == kString || r.k == kString) {
		return concat(l, r), nil
	}
	ordering := n.op[0] == '<' || n.op[0] == '>'
	if l.k == kNull || r.k == kNull {
		// C# lifted operators: null in arithmetic gives null, in comparisons false.
		if ordering {
			return boolValue(false), nil
		}
		return nullValue, nil
	}
	if l.k != r.k || l.k != kInt && !(ordering && l.k == kTime) {
		return nullValue, typeError(n.op, l, r)
	}
	a, b := l.n, r.n
	switch n.op {
	case "+":
		return intValue(a + b), nil
	case "-":
		return intValue(a - b), nil
	case "*":
		return intValue(a * b), nil
	case "/", "%":
		if b == 0 {
			return nullValue, &evalError{"Attempted to divide by zero."}
		}
		if b == -1 {
			// Avoid the MinInt64 / -1 overflow trap; C# unchecked arithmetic wraps.
			if n.op == "/" {
				return intValue(-a), nil
			}
			return intValue(0), nil
		}
		if n.op == "/" {
			return intValue(a / b), nil
		}
		return intValue(a % b), nil
	case "<":
		return boolValue(a < b), nil
	case "<=":
		return boolValue(a <= b), nil
	case ">":
		return boolValue(a > b), nil
	case ">=":
		return boolValue(a >= b), nil
	}
	return nullValue, typeError(n.op, l, r)
}

type eqNode struct {
	not  bool
	l, r node
}

func (n *eqNode) eval(c Context) (value, error) {
	l, r, err := evalPair(c, n.l, n.r)
	if err != nil {
		return nullValue, err
	}
	return boolValue(equal(l, r) != n.not), nil
}

// evalBool evaluates n, which must produce a bool.
func evalBool(c Context, n node, what string) (bool, error) {
	v, err := n.eval(c)
	if err != nil {
		return false, err
	}
	if v.k != kBool {
		return false, &evalError{what + " must be of type 'bool', not '" + v.k.String() + "'."}
	}
	return v.n != 0, nil
}

type logicNode struct {
	and  bool
	l, r node
}

func (n *logicNode) eval(c Context) (value, error) {
	l, err := evalBool(c, n.l, "The operand")
	if err != nil {
		return nullValue, err
	}
	if l != n.and {
		return boolValue(l), nil
	}
	r, err := evalBool(c, n.r, "The operand")
	return boolValue(r), err
}

type unaryNode struct {
	neg bool
	x   node
}

func (n *unaryNode) eval(c Context) (value, error) {
	v, err := n.x.eval(c)
	if err != nil {
		return nullValue, err
	}
	switch {
	case n.neg && v.k == kInt:
		return intValue(-v.n), nil
	case !n.neg && v.k == kBool:
		return boolValue(v.n == 0), nil
	case v.k == kNull:
		return nullValue, nil
	}
	op := "!"
	if n.neg {
		op = "-"
	}
	return nullValue, &evalError{"Operator '" + op + "' cannot be applied to an operand of type '" + v.k.String() + "'."}
}

type castNode struct {
	to typ
	x  node
}

func (n *castNode) eval(c Context) (value, error) {
	v, err := n.x.eval(c)
	if err != nil {
		return nullValue, err
	}
	return convert(v, n.to)
}

// convert checks that v is of type t, as a C# cast from object does.
func convert(v value, t typ) (value, error) {
	ok := false
	switch t {
	case tyObject:
		ok = true
	case tyString:
		ok = v.k == kString || v.k == kNull
	case tyJwt:
		ok = v.k == kJwt || v.k == kNull
	case tyInt:
		ok = v.k == kInt
	case tyBool:
		ok = v.k == kBool
	case tyTime:
		ok = v.k == kTime
	}
	if !ok {
		if v.k == kNull {
			return nullValue, &evalError{"Nullable object must have a value."}
		}
		return nullValue, &evalError{"Unable to cast object of type '" + v.k.String() + "' to type '" + t.String() + "'."}
	}
	return v, nil
}

type condNode struct{ c, a, b node }

func (n *condNode) eval(c Context) (value, error) {
	ok, err := evalBool(c, n.c, "The condition")
	if err != nil {
		return nullValue, err
	}
	if ok {
		return n.a.eval(c)
	}
	return n.b.eval(c)
}

type coalesceNode struct{ l, r node }

func (n *coalesceNode) eval(c Context) (value, error) {
	l, err := n.l.eval(c)
	if err != nil || l.k != kNull {
		return l, err
	}
	return n.r.eval(c)
}

type isNullOrNode struct {
	white bool
	x     node
}

func (n *isNullOrNode) eval(c Context) (value, error) {
	v, err := n.x.eval(c)
	if err != nil {
		return nullValue, err
	}
	switch v.k {
	case kNull:
		return boolValue(true), nil
	case kString:
		if n.white {
			return boolValue(strings.TrimFunc(v.s, unicode.IsSpace) == ""), nil
		}
		return boolValue(v.s == ""), nil
	}
	return nullValue, &evalError{"The argument must be of type 'string', not '" + v.k.String() + "'."}
}

// memberNode is a property or method of a value.
type memberNode struct {
	recv     node
	id       memberID
	args     []node
	nullProp bool // after ?. in the chain: a null receiver gives null
	pos      int
}

// stringArg evaluates argument i, which must be a string (null is refused, as .NET's
// string methods throw on a null argument).
func (n *memberNode) stringArg(c Context, i int) (string, error) {
	v, err := n.args[i].eval(c)
	if err != nil {
		return "", err
	}
	if v.k != kString {
		if v.k == kNull {
			return "", &evalError{"Value cannot be null."}
		}
		return "", &evalError{"The argument must be of type 'string', not '" + v.k.String() + "'."}
	}
	return v.s, nil
}

func (n *memberNode) intArg(c Context, i int) (int64, error) {
	v, err := n.args[i].eval(c)
	if err != nil {
		return 0, err
	}
	if v.k != kInt {
		return 0, &evalError{"The argument must be of type 'int', not '" + v.k.String() + "'."}
	}
	return v.n, nil
}

func (n *memberNode) eval(c Context) (value, error) {
	r, err := n.recv.eval(c)
	if err != nil {
		return nullValue, err
	}
	if r.k == kNull {
		if n.nullProp {
			return nullValue, nil
		}
		return nullValue, errNullRef
	}
	switch r.k {
	case kString:
		return n.onString(c, r.s)
	case kJwt:
		return n.onJwt(r.ref.(*Jwt))
	case kClaims:
		return n.onClaims(c, r.ref.(*Jwt))
	case kStrings:
		return n.onStrings(c, r.ref.([]string))
	case kInt, kBool, kTime, kObject:
		switch n.id {
		case mToString:
			return strValue(r.text()), nil
		case mEquals:
			a, err := n.args[0].eval(c)
			if err != nil {
				return nullValue, err
			}
			return boolValue(equal(r, a)), nil
		}
	}
	return nullValue, n.noMember(r)
}

func (n *memberNode) noMember(r value) error {
	name := ""
	for k, id := range memberIDs {
		if id == n.id && (name == "" || k < name) {
			name = k
		}
	}
	return &evalError{"'" + r.k.String() + "' does not contain a definition for '" + name + "'."}
}

func (n *memberNode) onString(c Context, s string) (value, error) {
	switch n.id {
	case mLength:
		return intValue(int64(utf8.RuneCountInString(s))), nil
	case mToString:
		return strValue(s), nil
	case mToLower:
		return strValue(strings.ToLower(s)), nil
	case mToUpper:
		return strValue(strings.ToUpper(s)), nil
	case mTrim:
		return strValue(strings.TrimFunc(s, unicode.IsSpace)), nil
	case mTrimStart:
		return strValue(strings.TrimLeftFunc(s, unicode.IsSpace)), nil
	case mTrimEnd:
		return strValue(strings.TrimRightFunc(s, unicode.IsSpace)), nil
	case mAsJwt:
		if j := ParseJwt(s); j != nil {
			return value{k: kJwt, ref: j}, nil
		}
		return nullValue, nil
	case mEquals:
		a, err := n.args[0].eval(c)
		if err != nil {
			return nullValue, err
		}
		return boolValue(equal(strValue(s), a)), nil
	case mSubstring:
		return n.substring(c, s)
	}
	a, err := n.stringArg(c, 0)
	if err != nil {
		return nullValue, err
	}
	switch n.id {
	case mContains:
		return boolValue(strings.Contains(s, a)), nil
	case mStartsWith:
		return boolValue(strings.HasPrefix(s, a)), nil
	case mEndsWith:
		return boolValue(strings.HasSuffix(s, a)), nil
	case mIndexOf:
		i := strings.Index(s, a)
		if i > 0 {
			i = utf8.RuneCountInString(s[:i])
		}
		return intValue(int64(i)), nil
	case mReplace:
		b, err := n.stringArg(c, 1)
		if err != nil {
			return nullValue, err
		}
		if a == "" {
			return nullValue, &evalError{"String cannot be of zero length."}
		}
		return strValue(strings.ReplaceAll(s, a, b)), nil
	case mSplit:
		seps := []string{a}
		for i := 1; i < len(n.args); i++ {
			sep, err := n.stringArg(c, i)
			if err != nil {
				return nullValue, err
			}
			seps = append(seps, sep)
		}
		return value{k: kStrings, ref: split(s, seps)}, nil
	}
	return nullValue, n.noMember(strValue(s))
}

// split is .NET's String.Split with several separators: empty entries are kept.
func split(s string, seps []string) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); {
		matched := 0
		for _, sep := range seps {
			if sep != "" && strings.HasPrefix(s[i:], sep) {
				matched = len(sep)
				break
			}
		}
		if matched == 0 {
			i++
			continue
		}
		out = append(out, s[start:i])
		i += matched
		start = i
	}
	return append(out, s[start:])
}

func (n *memberNode) substring(c Context, s string) (value, error) {
	rs := []rune(s)
	start, err := n.intArg(c, 0)
	if err != nil {
		return nullValue, err
	}
	length := int64(len(rs)) - start
	if len(n.args) == 2 {
		if length, err = n.intArg(c, 1); err != nil {
			return nullValue, err
		}
	}
	if start < 0 || length < 0 || start > int64(len(rs)) || start+length > int64(len(rs)) {
		return nullValue, &evalError{"Index and length must refer to a location within the string."}
	}
	return strValue(string(rs[start : start+length])), nil
}

func (n *memberNode) onJwt(j *Jwt) (value, error) {
	optString := func(s string, ok bool) (value, error) {
		if !ok {
			return nullValue, nil
		}
		return strValue(s), nil
	}
	optTime := func(name string) (value, error) {
		t, ok := j.TimeClaim(name)
		if !ok {
			return nullValue, nil
		}
		return timeValue(t), nil
	}
	switch n.id {
	case mClaims:
		return value{k: kClaims, ref: j}, nil
	case mSubject:
		return optString(j.StringClaim("sub"))
	case mIssuer:
		return optString(j.StringClaim("iss"))
	case mID:
		return optString(j.StringClaim("jti"))
	case mAlgorithm:
		return strValue(j.headerString("alg")), nil
	case mType:
		return strValue(j.headerString("typ")), nil
	case mAudiences:
		return value{k: kStrings, ref: j.Audiences()}, nil
	case mExpirationTime:
		return optTime("exp")
	case mNotBefore:
		return optTime("nbf")
	case mIssuedAt:
		return optTime("iat")
	case mToString:
		return strValue(j.Raw), nil
	}
	return nullValue, n.noMember(value{k: kJwt})
}

func (n *memberNode) onClaims(c Context, j *Jwt) (value, error) {
	switch n.id {
	case mLength:
		return intValue(int64(len(j.Claims))), nil
	case mGetValueOrDefault, mContainsKey:
		name, err := n.stringArg(c, 0)
		if err != nil {
			return nullValue, err
		}
		v, ok := j.ClaimValue(name)
		if n.id == mContainsKey {
			return boolValue(ok), nil
		}
		if ok {
			return strValue(v), nil
		}
		if len(n.args) == 2 {
			return n.args[1].eval(c)
		}
		return nullValue, nil
	}
	return nullValue, n.noMember(value{k: kClaims})
}

func (n *memberNode) onStrings(c Context, ss []string) (value, error) {
	switch n.id {
	case mLength:
		return intValue(int64(len(ss))), nil
	case mContains:
		a, err := n.args[0].eval(c)
		if err != nil {
			return nullValue, err
		}
		for _, s := range ss {
			if a.k == kString && s == a.s {
				return boolValue(true), nil
			}
		}
		return boolValue(false), nil
	case mFirst, mFirstOrDefault, mLast, mLastOrDefault:
		if len(ss) == 0 {
			if n.id == mFirst || n.id == mLast {
				return nullValue, &evalError{"Sequence contains no elements."}
			}
			return nullValue, nil
		}
		if n.id == mFirst || n.id == mFirstOrDefault {
			return strValue(ss[0]), nil
		}
		return strValue(ss[len(ss)-1]), nil
	case mToString:
		return strValue(value{k: kStrings}.text()), nil
	}
	return nullValue, n.noMember(value{k: kStrings})
}

// indexNode is a[i] on a string array, or claims["name"].
type indexNode struct {
	recv, idx node
	nullProp  bool
	pos       int
}

func (n *indexNode) eval(c Context) (value, error) {
	r, err := n.recv.eval(c)
	if err != nil {
		return nullValue, err
	}
	if r.k == kNull {
		if n.nullProp {
			return nullValue, nil
		}
		return nullValue, errNullRef
	}
	i, err := n.idx.eval(c)
	if err != nil {
		return nullValue, err
	}
	switch {
	case r.k == kStrings && i.k == kInt:
		ss := r.ref.([]string)
		if i.n < 0 || i.n >= int64(len(ss)) {
			return nullValue, &evalError{"Index was outside the bounds of the array."}
		}
		return strValue(ss[i.n]), nil
	case r.k == kClaims && i.k == kString:
		vs := r.ref.(*Jwt).ClaimValues(i.s)
		if vs == nil {
			return nullValue, &evalError{"The given key '" + i.s + "' was not present in the dictionary."}
		}
		return value{k: kStrings, ref: vs}, nil
	}
	return nullValue, &evalError{"Cannot apply indexing to an expression of type '" + r.k.String() + "'."}
}

type fieldNode struct {
	f        Field
	nullProp bool
}

func (n *fieldNode) eval(c Context) (value, error) {
	switch n.f {
	case fTimestamp:
		return timeValue(c.Timestamp()), nil
	case fMethod:
		h := c.HTTP()
		if h == nil {
			return strValue(""), nil
		}
		return strValue(h.Method), nil
	case fURLPath, fURLHost, fURLScheme, fURLPort:
		return urlField(c.HTTP(), n.f), nil
	case fResponseStatus:
		return nullValue, &evalError{"context.Response is not available before the backend answers."}
	}
	s, ok := c.Field(n.f)
	if !ok {
		if n.nullProp {
			return nullValue, nil
		}
		return nullValue, errNullRef
	}
	return strValue(s), nil
}

// urlField returns a part of the URL the client asked for. The scheme is "https" when the
// request arrived over TLS, else "http".
func urlField(h *http.Request, f Field) value {
	if h == nil {
		if f == fURLPort {
			return intValue(0)
		}
		return strValue("")
	}
	host, port := h.Host, ""
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[i:], "]") {
		host, port = host[:i], host[i+1:]
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	switch f {
	case fURLPath:
		if h.URL == nil {
			return strValue("")
		}
		return strValue(h.URL.Path)
	case fURLHost:
		return strValue(host)
	case fURLScheme:
		if h.TLS != nil {
			return strValue("https")
		}
		return strValue("http")
	}
	if n, err := strconv.Atoi(port); err == nil {
		return intValue(int64(n))
	}
	if h.TLS != nil {
		return intValue(443)
	}
	return intValue(80)
}

// headerMode is what a context.Request.Headers node computes.
type headerMode uint8

const (
	hGet    headerMode = iota // GetValueOrDefault: values joined by commas
	hHas                      // ContainsKey
	hValues                   // Headers[name]: string[]
)

// headerNode reads the request headers as they stand (after earlier set-header policies).
type headerNode struct {
	mode  headerMode
	name  node
	canon string // the canonical name when name is a literal
	def   node
}

func newHeaderNode(mode headerMode, name, def node) *headerNode {
	n := &headerNode{mode: mode, name: name, def: def}
	if canon, ok := canonicalIfConst(name); ok {
		n.canon, n.name = canon, nil
	}
	return n
}

func (n *headerNode) eval(c Context) (value, error) {
	key := n.canon
	if n.name != nil {
		name, err := evalKey(c, n.name)
		if err != nil {
			return nullValue, err
		}
		key = http.CanonicalHeaderKey(name)
	}
	vals := c.Header()[key]
	switch n.mode {
	case hHas:
		return boolValue(vals != nil), nil
	case hValues:
		if vals == nil {
			return nullValue, &evalError{"The given key '" + key + "' was not present in the dictionary."}
		}
		return value{k: kStrings, ref: vals}, nil
	}
	return joinOrDefault(c, vals, vals != nil, n.def)
}

// joinOrDefault returns the values joined by commas when present, else the default (null
// without one).
func joinOrDefault(c Context, vals []string, present bool, def node) (value, error) {
	switch {
	case !present:
		if def == nil {
			return nullValue, nil
		}
		return def.eval(c)
	case len(vals) == 1:
		return strValue(vals[0]), nil
	}
	return strValue(strings.Join(vals, ",")), nil
}

// queryNode reads the query parameters that will go to the backend.
type queryNode struct {
	name node
	def  node
	has  bool
}

func (n *queryNode) eval(c Context) (value, error) {
	key, err := evalKey(c, n.name)
	if err != nil {
		return nullValue, err
	}
	vals, ok := c.Query()[key]
	if n.has {
		return boolValue(ok), nil
	}
	return joinOrDefault(c, vals, ok, n.def)
}

// varNode is context.Variables[name] or context.Variables.ContainsKey(name).
type varNode struct {
	name node
	has  bool
}

func (n *varNode) eval(c Context) (value, error) {
	key, err := evalKey(c, n.name)
	if err != nil {
		return nullValue, err
	}
	x, ok := c.Variables()[key]
	if n.has {
		return boolValue(ok), nil
	}
	if !ok {
		return nullValue, &evalError{"The given key '" + key + "' was not present in the dictionary."}
	}
	return fromAny(x), nil
}

// varGetNode is context.Variables.GetValueOrDefault<T>(name, default).
type varGetNode struct {
	name, def node
	want      typ
}

func (n *varGetNode) eval(c Context) (value, error) {
	key, err := evalKey(c, n.name)
	if err != nil {
		return nullValue, err
	}
	x, ok := c.Variables()[key]
	if !ok {
		if n.def != nil {
			return n.def.eval(c)
		}
		switch n.want {
		case tyInt:
			return intValue(0), nil
		case tyBool:
			return boolValue(false), nil
		}
		return nullValue, nil
	}
	return convert(fromAny(x), n.want)
}

// evalKey evaluates the name argument of a header, query or variable lookup, which must be a
// string (.NET throws "Value cannot be null." for a null key).
func evalKey(c Context, name node) (string, error) {
	v, err := name.eval(c)
	if err != nil {
		return "", err
	}
	if v.k != kString {
		return "", &evalError{"Value cannot be null."}
	}
	return v.s, nil
}
