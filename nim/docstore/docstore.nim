## docstore: an example Nim library with a thread-affine C API, guarded by threadguard.
##
## A store is a `ref` object holding `ref` documents with `string` and `seq` data, all on the
## Nim heap of the thread that created the store. C (and Go) see only `tg_handle` values; every
## exported function is a threadguard entry point (`tgExport`), so:
##
## * the calling thread is prepared for Nim's memory manager first (foreign-thread GC setup
##   under refc and markAndSweep; nothing to set up under ARC and ORC);
## * a store is read or changed only inside `tryBorrow`, that is, only on its owner thread
##   (I1); from any other thread the call returns `TG_ERR_WRONG_THREAD` before any of the
##   store's memory is touched, and changes nothing (I6);
## * each store is destroyed exactly once, on its owner (I5): `docstore_free` on the owner,
##   `docstore_free_later` from anywhere, or the owner's cleanup or exit. The destroy hook
##   counts these runs and checks the thread they ran on, for tests.
##
## The C declarations are in docstore.h, which the generated C includes, so the C compiler
## checks that header against these definitions.

import std/tables
import ../threadguard

{.passC: "-I" & sourceDir(currentSourcePath()).}
{.emit: """/*INCLUDESECTION*/
#include "docstore.h"
""".}

type
  ConstChars {.importc: "const char *", nodecl.} = cstring
    ## A C `const char *` argument.

  DestroyObserver = proc (serial, ownerThread, destroyedOnThread: uint64,
                          context: pointer) {.cdecl, raises: [], gcsafe.}

  Doc = ref object
    value: string
    history: seq[string] ## Earlier values, oldest first.

  Store = ref object
    docs: Table[string, Doc]
    serial: uint64        ## Unique per process, from 1.
    ownerThread: uint64   ## threadguard ID of the creating thread.
    ownerOsThread: int    ## OS thread ID of the creating thread.

const
  docstoreTypeTag = 0x4e445331'u32 ## "NDS1"; DOCSTORE_TYPE_TAG in docstore.h.
  lastErrorSize = 256

var
  lastSerial, createdCount, destroyedCount, misplacedCount: uint64
  observer: pointer
  observerContext: pointer

var
  lastErrorText {.threadvar.}: array[lastErrorSize, char]
  lastErrorLen {.threadvar.}: int

proc storeDestroyed(s: Store) {.nimcall, raises: [], gcsafe.} =
  # Runs on the thread threadguard destroys the store on, which must be its owner.
  let ranOn = tg_current_thread_id()
  if ranOn != s.ownerThread or getThreadId() != s.ownerOsThread:
    discard atomicAddFetch(addr misplacedCount, 1'u64, ATOMIC_RELAXED)
  let fn = cast[DestroyObserver](atomicLoadN(addr observer, ATOMIC_ACQUIRE))
  if fn != nil:
    fn(s.serial, s.ownerThread, ranOn, atomicLoadN(addr observerContext, ATOMIC_ACQUIRE))
  discard atomicAddFetch(addr destroyedCount, 1'u64, ATOMIC_RELEASE)

guardedType(Store, docstoreTypeTag, storeDestroyed)

# ---------------------------------------------------------------------------------------
# Last error: threadguard's message for handle refusals, ours for argument errors
# ---------------------------------------------------------------------------------------

proc setOwnError(text: string) {.raises: [], gcsafe.} =
  let n = min(text.len, lastErrorSize - 1)
  if n > 0:
    copyMem(addr lastErrorText[0], unsafeAddr text[0], n)
  lastErrorText[n] = '\0'
  lastErrorLen = text.len

proc finish(status: TgStatus): TgCode {.raises: [], gcsafe.} =
  ## The C code for `status`; on refusal, keeps threadguard's message as our last error.
  if status != tgOk:
    let n = tg_last_error(cast[cstring](addr lastErrorText[0]), csize_t(lastErrorSize))
    lastErrorLen = int(n)
  status.code

proc argumentError(status: TgStatus, text: string): TgCode {.raises: [], gcsafe.} =
  setOwnError(text)
  status.code

# ---------------------------------------------------------------------------------------
# The C API (see docstore.h for the contract of each function)
# ---------------------------------------------------------------------------------------

proc docstore_new(outp: ptr TgHandle): TgCode {.tgExport: "docstore_new".} =
  if outp == nil:
    return argumentError(tgErrNullPointer, "docstore_new: out is NULL")
  let s = Store(docs: initTable[string, Doc](),
                serial: atomicAddFetch(addr lastSerial, 1'u64, ATOMIC_RELAXED),
                ownerThread: tg_current_thread_id(), ownerOsThread: getThreadId())
  var handle: TgHandle
  result = finish(tryRegister(s, handle))
  if result == TG_OK:
    discard atomicAddFetch(addr createdCount, 1'u64, ATOMIC_RELEASE)
    outp[] = handle

proc docstore_put(store: TgHandle, key, value: ConstChars): TgCode {.tgExport: "docstore_put".} =
  var missing = ""
  let status = tryBorrow(store, Store, s):
    if key == nil: missing = "key"
    elif value == nil: missing = "value"
    else:
      let k = $cstring(key)
      var d = s.docs.getOrDefault(k)
      if d.isNil:
        d = Doc()
        s.docs[k] = d
      else:
        d.history.add d.value
      d.value = $cstring(value)
  if status == tgOk and missing.len > 0:
    return argumentError(tgErrNullPointer, "docstore_put: " & missing & " is NULL")
  finish(status)

proc docstore_get(store: TgHandle, key: ConstChars, buf: cstring, len: csize_t,
                  outLen: ptr int64): TgCode {.tgExport: "docstore_get".} =
  var missing = ""
  let status = tryBorrow(store, Store, s):
    if key == nil: missing = "key"
    elif outLen == nil: missing = "out_len"
    elif buf == nil and len > 0: missing = "buf"
    else:
      let d = s.docs.getOrDefault($cstring(key))
      let value = if d.isNil: "" else: d.value
      if len > 0:
        let dst = cast[ptr UncheckedArray[char]](buf)
        let n = min(value.len, int(len) - 1)
        if n > 0:
          copyMem(dst, unsafeAddr value[0], n)
        dst[n] = '\0'
      outLen[] = if d.isNil: -1'i64 else: int64(value.len)
  if status == tgOk and missing.len > 0:
    return argumentError(tgErrNullPointer, "docstore_get: " & missing & " is NULL")
  finish(status)

proc docstore_revisions(store: TgHandle, key: ConstChars, outCount: ptr uint64): TgCode {.
    tgExport: "docstore_revisions".} =
  var missing = ""
  let status = tryBorrow(store, Store, s):
    if key == nil: missing = "key"
    elif outCount == nil: missing = "out_count"
    else:
      let d = s.docs.getOrDefault($cstring(key))
      outCount[] = if d.isNil: 0'u64 else: uint64(d.history.len + 1)
  if status == tgOk and missing.len > 0:
    return argumentError(tgErrNullPointer, "docstore_revisions: " & missing & " is NULL")
  finish(status)

proc docstore_count(store: TgHandle, outCount: ptr uint64): TgCode {.tgExport: "docstore_count".} =
  var missing = false
  let status = tryBorrow(store, Store, s):
    if outCount == nil: missing = true
    else: outCount[] = uint64(s.docs.len)
  if status == tgOk and missing:
    return argumentError(tgErrNullPointer, "docstore_count: out_count is NULL")
  finish(status)

proc docstore_serial(store: TgHandle, outSerial: ptr uint64): TgCode {.tgExport: "docstore_serial".} =
  var missing = false
  let status = tryBorrow(store, Store, s):
    if outSerial == nil: missing = true
    else: outSerial[] = s.serial
  if status == tgOk and missing:
    return argumentError(tgErrNullPointer, "docstore_serial: out_serial is NULL")
  finish(status)

proc docstore_owner(store: TgHandle, outThreadId: ptr uint64): TgCode {.tgExport: "docstore_owner".} =
  finish(tg_owner_of(store, outThreadId).toStatus)

proc docstore_free(store: TgHandle): TgCode {.tgExport: "docstore_free".} =
  finish(tryDestroy[Store](store))

proc docstore_free_later(store: TgHandle): TgCode {.tgExport: "docstore_free_later".} =
  finish(tryDestroyLater[Store](store))

proc docstore_collect() {.tgExport: "docstore_collect".} =
  try:
    # ORC declares that a collection may raise (destructors it runs could); ours do not.
    GC_fullCollect()
  except Exception:
    discard

proc docstore_last_error(buf: cstring, len: csize_t): csize_t {.exportc, cdecl, raises: [], gcsafe.} =
  # No Nim heap use: copies this thread's fixed buffer.
  if len > 0 and buf != nil:
    let dst = cast[ptr UncheckedArray[char]](buf)
    let n = min(min(lastErrorLen, lastErrorSize - 1), int(len) - 1)
    if n > 0:
      copyMem(dst, addr lastErrorText[0], n)
    dst[n] = '\0'
  csize_t(lastErrorLen)

proc docstore_set_destroy_observer(fn: DestroyObserver, context: pointer) {.exportc, cdecl,
    raises: [], gcsafe.} =
  atomicStoreN(addr observerContext, context, ATOMIC_RELEASE)
  atomicStoreN(addr observer, cast[pointer](fn), ATOMIC_RELEASE)

proc docstore_created_count(): uint64 {.exportc, cdecl, raises: [], gcsafe.} =
  atomicLoadN(addr createdCount, ATOMIC_ACQUIRE)

proc docstore_destroyed_count(): uint64 {.exportc, cdecl, raises: [], gcsafe.} =
  atomicLoadN(addr destroyedCount, ATOMIC_ACQUIRE)

proc docstore_misplaced_count(): uint64 {.exportc, cdecl, raises: [], gcsafe.} =
  atomicLoadN(addr misplacedCount, ATOMIC_ACQUIRE)

proc docstore_memory_manager(): ConstChars {.exportc, cdecl, raises: [], gcsafe.} =
  const name = when defined(gcOrc): "orc"
               elif defined(gcArc): "arc"
               elif defined(gcMarkAndSweep): "markAndSweep"
               else: "refc"
  ConstChars(cstring(name))
