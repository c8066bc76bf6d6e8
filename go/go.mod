module threadguard.dev/threadguard

go 1.24
