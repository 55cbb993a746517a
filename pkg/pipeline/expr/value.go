package expr

import (
	"fmt"
	"strconv"
	"time"
)

// kind is the run-time type of an expression value.
type kind uint8

const (
	kNull kind = iota
	kString
	kInt
	kBool
	kJwt     // ref is *Jwt
	kClaims  // ref is *Jwt (its claims)
	kStrings // ref is []string
	kTime    // n is Unix nanoseconds, UTC
	kObject  // ref is any other Go value (from context.Variables)
)

// value is an expression value. It is passed by value so that strings, integers and booleans
// cost no allocation.
type value struct {
	k   kind
	s   string
	n   int64
	ref any
}

var nullValue = value{}

func strValue(s string) value { return value{k: kString, s: s} }
func intValue(n int64) value  { return value{k: kInt, n: n} }
func timeValue(t time.Time) value {
	return value{k: kTime, n: t.UnixNano()}
}

func boolValue(b bool) value {
	if b {
		return value{k: kBool, n: 1}
	}
	return value{k: kBool}
}

func (v value) isTrue() bool { return v.k == kBool && v.n != 0 }

func (v value) time() time.Time { return time.Unix(0, v.n).UTC() }

// String names a kind as C# would in an error message.
func (k kind) String() string {
	switch k {
	case kNull:
		return "null"
	case kString:
		return "string"
	case kInt:
		return "int"
	case kBool:
		return "bool"
	case kJwt:
		return "Jwt"
	case kClaims:
		return "IReadOnlyDictionary<string, string[]>"
	case kStrings:
		return "string[]"
	case kTime:
		return "DateTime"
	}
	return "object"
}

// text converts v to a string the way C# string concatenation and ToString() do: null is
// empty, booleans are "True"/"False", DateTime uses the round-trip ("o") format.
func (v value) text() string {
	switch v.k {
	case kNull:
		return ""
	case kString:
		return v.s
	case kInt:
		return strconv.FormatInt(v.n, 10)
	case kBool:
		if v.n != 0 {
			return "True"
		}
		return "False"
	case kJwt:
		return v.ref.(*Jwt).Raw
	case kClaims:
		return "System.Collections.Generic.Dictionary`2[System.String,System.String[]]"
	case kStrings:
		return "System.String[]"
	case kTime:
		return v.time().Format("2006-01-02T15:04:05.0000000Z")
	}
	return fmt.Sprint(v.ref)
}

// fromAny converts a context.Variables entry to a value.
func fromAny(x any) value {
	switch t := x.(type) {
	case nil:
		return nullValue
	case string:
		return strValue(t)
	case int:
		return intValue(int64(t))
	case int64:
		return intValue(t)
	case int32:
		return intValue(int64(t))
	case bool:
		return boolValue(t)
	case *Jwt:
		if t == nil {
			return nullValue
		}
		return value{k: kJwt, ref: t}
	case []string:
		return value{k: kStrings, ref: t}
	case time.Time:
		return timeValue(t)
	}
	return value{k: kObject, ref: x}
}

// toAny converts a value for storage in context.Variables.
func (v value) toAny() any {
	switch v.k {
	case kNull:
		return nil
	case kString:
		return v.s
	case kInt:
		return int(v.n)
	case kBool:
		return v.n != 0
	case kTime:
		return v.time()
	}
	return v.ref
}

// equal is C#'s == on the values: by value for strings, numbers, booleans and times, null
// equals only null, and values of different kinds are unequal.
func equal(a, b value) bool {
	if a.k != b.k {
		return false
	}
	switch a.k {
	case kNull:
		return true
	case kString:
		return a.s == b.s
	case kInt, kBool, kTime:
		return a.n == b.n
	case kJwt, kClaims:
		return a.ref.(*Jwt) == b.ref.(*Jwt)
	}
	return false
}
