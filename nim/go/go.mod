module threadguard.dev/nimdocstore

go 1.24

require threadguard.dev/threadguard v0.0.0-00010101000000-000000000000

replace threadguard.dev/threadguard => ../../go
