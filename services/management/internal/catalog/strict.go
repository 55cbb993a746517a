package catalog

import (
	"bytes"
	"encoding/json"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// rawMessageType is json.RawMessage, which holds JSON a kind keeps as it was sent.
var rawMessageType = reflect.TypeFor[json.RawMessage]()

// UnknownField returns the path of the first property of raw that a value of type t does not
// decode, walking every nested object and array that t types ("contact.phone",
// "responses[0].example"), or "" when t has a place for each. Names match as encoding/json
// matches them, case-insensitively; a json.RawMessage or interface holds anything. Values of
// the wrong type are encoding/json's to report, not this function's.
func UnknownField(raw json.RawMessage, t reflect.Type) string {
	return unknownIn(bytes.TrimSpace(raw), t, "")
}

func unknownIn(raw []byte, t reflect.Type, path string) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == rawMessageType || t.Kind() == reflect.Interface || len(raw) == 0 {
		return ""
	}
	switch t.Kind() {
	case reflect.Struct:
		var obj map[string]json.RawMessage
		if json.Unmarshal(raw, &obj) != nil {
			return ""
		}
		fields := jsonFields(t)
		for _, name := range sortedKeys(obj) {
			ft, ok := fieldFold(fields, name)
			if !ok {
				return join(path, name)
			}
			if p := unknownIn(obj[name], ft, join(path, name)); p != "" {
				return p
			}
		}
	case reflect.Map:
		var obj map[string]json.RawMessage
		if json.Unmarshal(raw, &obj) != nil {
			return ""
		}
		for _, name := range sortedKeys(obj) {
			if p := unknownIn(obj[name], t.Elem(), join(path, name)); p != "" {
				return p
			}
		}
	case reflect.Slice, reflect.Array:
		var arr []json.RawMessage
		if json.Unmarshal(raw, &arr) != nil {
			return ""
		}
		for i, v := range arr {
			if p := unknownIn(v, t.Elem(), path+"["+strconv.Itoa(i)+"]"); p != "" {
				return p
			}
		}
	}
	return ""
}

// jsonFields maps the JSON names of t's fields to their types, the fields of embedded structs
// included unless a shallower field has the name, as encoding/json resolves them.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	var embedded []reflect.Type
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if f.Anonymous && name == "" && ft.Kind() == reflect.Struct {
			embedded = append(embedded, ft)
			continue
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	for _, et := range embedded {
		for name, ft := range jsonFields(et) {
			if _, ok := out[name]; !ok {
				out[name] = ft
			}
		}
	}
	return out
}

// fieldFold finds name among fields, exactly or else case-insensitively.
func fieldFold(fields map[string]reflect.Type, name string) (reflect.Type, bool) {
	if t, ok := fields[name]; ok {
		return t, true
	}
	for n, t := range fields {
		if strings.EqualFold(n, name) {
			return t, true
		}
	}
	return nil, false
}

func sortedKeys(m map[string]json.RawMessage) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}
