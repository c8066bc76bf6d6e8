module threadguard.dev/threadguard/examples/tcl

go 1.24

require threadguard.dev/threadguard v0.0.0

replace threadguard.dev/threadguard => ../..
