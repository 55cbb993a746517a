module gatehouse.dev/openapi

go 1.26.8
