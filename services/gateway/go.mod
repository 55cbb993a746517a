module gatehouse.dev/gateway

go 1.26.8

require gatehouse.dev/pkg v0.0.0

replace gatehouse.dev/pkg => ../../pkg
