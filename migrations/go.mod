module gatehouse.dev/migrations

go 1.26.8
