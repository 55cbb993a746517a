module gatehouse.dev/pkg

go 1.26.8

require github.com/google/go-cmp v0.7.0

require google.golang.org/protobuf v1.36.12

require (
	github.com/MicahParks/jwkset v0.11.4
	github.com/golang-jwt/jwt/v5 v5.3.1
)

require golang.org/x/time v0.9.0 // indirect
