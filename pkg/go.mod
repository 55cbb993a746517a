module gatehouse.dev/pkg

go 1.26.8
