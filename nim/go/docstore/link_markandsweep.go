//go:build nim_markAndSweep && !nim_orc && !nim_refc && !nim_arc

package docstore

// #cgo LDFLAGS: ${SRCDIR}/../../../build/nim/markAndSweep/libdocstore.a ${SRCDIR}/../../../target/release/libthreadguard.a -lpthread -ldl -lm
import "C"

// MemoryManager is the Nim memory manager of the linked libdocstore.a,
// chosen by build tag: nim_refc, nim_arc, nim_markAndSweep, or nim_orc
// (the default).
const MemoryManager = "markAndSweep"
