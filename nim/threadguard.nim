## Nim binding to threadguard's C ABI (`include/threadguard.h`).
##
## Two layers:
##
## * The raw layer mirrors the header one to one: `TgHandle`, `TgStats`, the `tg_*` procs
##   (imported with `{.header: "threadguard.h".}`) and the `TG_*` constants. Every raw proc
##   returns a `TgCode` (the C `tg_status`, an `int32`).
## * The idiomatic layer guards Nim `ref` objects: `guardedType` pairs a ref type with its type
##   tag, `register` pins an object (`GC_ref`) for as long as its handle lives, the destructor
##   releases it (`GC_unref`) on the owner thread, `borrow`/`tryBorrow` run code with the
##   object, and `tgExport` turns a proc into a C entry point that prepares the calling thread
##   for Nim's memory manager. Status codes become the `TgStatus` enum, or a `ThreadGuardError`
##   that carries the status and the `tg_last_error` text.
##
## What the idiomatic layer guarantees (on top of threadguard's I1 to I6):
##
## * **No exception crosses the ABI.** Every proc that C calls (entry points made with
##   `tgExport`, destructors, borrow trampolines) is `{.cdecl, raises: [], gcsafe.}`; an
##   exception raised inside `borrow` is caught on the owner thread and re-raised after
##   `tg_with` returns. (Defects are not exceptions to rely on: build with `--panics:on`.)
## * **A registered ref stays alive while its handle does.** `register` takes one `GC_ref`; the
##   destructor threadguard runs exactly once, on the owner thread, drops it with `GC_unref`.
##   No other thread ever touches the object or its reference count.
## * **Foreign threads are prepared automatically.** A `tgExport` entry point runs
##   `NimMain` once per process (static libraries), calls `setupForeignThreadGc` and widens the
##   GC's stack range to cover the entry point (refc and markAndSweep scan the stack; ARC and
##   ORC do not, and there both are no-ops), and arranges the thread's exit: threadguard
##   destroys what the thread owns while its Nim heap is still there, then the heap is given
##   back (refc and markAndSweep tear the foreign-thread GC down; ORC collects the thread's
##   cycle candidates).
##
## Requirements: `--threads:on`, native thread-local storage (`--tlsEmulation:off`, the default
## on Linux), POSIX threads, and the header on the C include path (`-d:threadguardInclude=DIR`,
## default `../include` next to this file). Link the final program with `libthreadguard.a`
## (and `-lpthread -ldl -lm`).

import std/macros
import std/posix

when not compileOption("threads"):
  {.error: "threadguard needs --threads:on (each thread owns its objects and its Nim heap)".}

func sourceDir*(path: string): string =
  ## The directory part of a source path (compile time; keeps `std/os` out of the library).
  ## Builds a new string: mutating a copy of `currentSourcePath()` in the compile-time VM
  ## corrupts the compiler's own copy of the file name (seen with Nim 1.6.10).
  var i = path.len - 1
  while i > 0 and path[i] notin {'/', '\\'}:
    dec i
  path.substr(0, i - 1)

const threadguardInclude {.strdefine.} = sourceDir(currentSourcePath()) & "/../include"
{.passC: "-I" & threadguardInclude.}

const usesStackScanningGc = not defined(gcDestructors) and not defined(nogc) and
  not defined(boehmgc) and not defined(gogc) and not defined(gcRegions)
  ## refc and markAndSweep find roots by scanning the thread's stack and need their
  ## per-thread heap set up on foreign threads; ARC and ORC do neither.

# ---------------------------------------------------------------------------------------
# Raw layer: the C ABI as declared in threadguard.h
# ---------------------------------------------------------------------------------------

type
  TgCode* = int32
    ## A C `tg_status`: `TG_OK` (0) or a `TG_ERR_*` code.

  TgHandle* {.importc: "tg_handle", header: "threadguard.h", bycopy.} = object
    ## An opaque handle (`tg_handle`): passed by value; the all-zero value is the null handle.
    owner*: uint64 ## ID of the owner thread; never 0 for a real handle.
    key*: uint64   ## The object's key in its owner's table (meaningless outside the library).

  TgStats* {.importc: "tg_stats", header: "threadguard.h", bycopy.} = object
    ## Process-wide counters (`tg_stats`); see the header for each field.
    live*, created*, destroyed*, deferred_pending*: uint64
    violations*, violations_null_handle*, violations_wrong_thread*,
      violations_owner_exited*, violations_stale*, violations_wrong_type*,
      violations_busy*, violations_null_pointer*, violations_invalid_argument*: uint64
    panics*, threads_live*, threads_started*: uint64
    detached*: uint64 ## Objects detached (tg_detach) and not yet adopted or destroyed.

  TgDestructor* = proc (obj: pointer) {.cdecl, raises: [], gcsafe.}
    ## `tg_destructor`: runs exactly once, on the owner thread; must not raise.

  TgBorrowFn* = proc (obj, context: pointer) {.cdecl, raises: [], gcsafe.}
    ## `tg_borrow_fn`: runs on the owner thread while the object is borrowed; must not raise.

const
  TG_OK* = TgCode(0)
  TG_ERR_NULL_HANDLE* = TgCode(1)
  TG_ERR_WRONG_THREAD* = TgCode(2)
  TG_ERR_OWNER_EXITED* = TgCode(3)
  TG_ERR_STALE* = TgCode(4)
  TG_ERR_WRONG_TYPE* = TgCode(5)
  TG_ERR_BUSY* = TgCode(6)
  TG_ERR_NULL_POINTER* = TgCode(7)
  TG_ERR_INVALID_ARGUMENT* = TgCode(8)
  TG_ERR_PANIC* = TgCode(9)
  TG_ERR_SHUT_DOWN* = TgCode(10)
  TG_ERR_LIMIT* = TgCode(11)
  TG_ERR_TIMEOUT* = TgCode(12)
  TG_POLICY_RETURN* = 0'i32
  TG_POLICY_LOG* = 1'i32
  TG_POLICY_ABORT* = 2'i32
  TG_ABI_VERSION* = 2'u32 ## The ABI version this binding was written against.

{.push header: "threadguard.h", importc, cdecl, raises: [], gcsafe.}
proc tg_status_name*(status: TgCode): cstring
proc tg_last_error*(buf: cstring, len: csize_t): csize_t
proc tg_get_stats*(outp: ptr TgStats): TgCode
proc tg_set_violation_policy*(policy: int32): TgCode
proc tg_set_thread_name*(name: cstring): TgCode
proc tg_version*(): cstring
proc tg_abi_version*(): uint32
proc tg_register*(typeTag: uint32, obj: pointer, destroy: TgDestructor, outp: ptr TgHandle): TgCode
proc tg_with*(handle: TgHandle, typeTag: uint32, fn: TgBorrowFn, context: pointer): TgCode
proc tg_destroy*(handle: TgHandle): TgCode
proc tg_destroy_later*(handle: TgHandle): TgCode
proc tg_run_pending*(): TgCode
proc tg_thread_cleanup*(): TgCode
proc tg_owner_of*(handle: TgHandle, outThreadId: ptr uint64): TgCode
proc tg_current_thread_id*(): uint64
{.pop.}

# ---------------------------------------------------------------------------------------
# Status codes and errors
# ---------------------------------------------------------------------------------------

type
  TgStatus* {.size: sizeof(int32).} = enum
    ## The status codes as an enum. `tgErrUnknown` stands for a code this binding does not
    ## know (a newer library); every other value equals its C code.
    tgErrUnknown = -1
    tgOk = 0
    tgErrNullHandle = 1
    tgErrWrongThread = 2
    tgErrOwnerExited = 3
    tgErrStale = 4
    tgErrWrongType = 5
    tgErrBusy = 6
    tgErrNullPointer = 7
    tgErrInvalidArgument = 8
    tgErrPanic = 9
    tgErrShutDown = 10
    tgErrLimit = 11
    tgErrTimeout = 12

  ThreadGuardError* = object of CatchableError
    ## A refused threadguard call: `status` says why, `detail` is the calling thread's
    ## `tg_last_error` text at the time (which handle, which owner, which caller).
    status*: TgStatus
    detail*: string

func toStatus*(code: TgCode): TgStatus =
  ## The enum value of a C status code; `tgErrUnknown` for codes this binding does not know.
  if code >= ord(tgOk) and code <= ord(high(TgStatus)): TgStatus(code) else: tgErrUnknown

func code*(status: TgStatus): TgCode =
  ## The C code of `status` (-1 for `tgErrUnknown`).
  TgCode(ord(status))

proc statusName*(status: TgStatus): string {.raises: [].} =
  ## The library's name for `status`, e.g. "TG_ERR_WRONG_THREAD".
  $tg_status_name(status.code)

proc lastError*(): string {.raises: [], gcsafe.} =
  ## The calling thread's last-error message (`tg_last_error`); "" if there is none.
  let n = tg_last_error(nil, 0)
  if n == 0:
    return ""
  result = newString(int(n))
  discard tg_last_error(cstring(result), n + 1)

proc newThreadGuardError*(status: TgStatus, op: string): ref ThreadGuardError {.raises: [].} =
  ## A `ThreadGuardError` for a refused `op`, carrying this thread's last-error text.
  let detail = lastError()
  result = (ref ThreadGuardError)(status: status, detail: detail,
    msg: op & ": " & statusName(status) & (if detail.len > 0: ": " & detail else: ""))

proc check*(code: TgCode, op: string) {.raises: [ThreadGuardError].} =
  ## Raises a `ThreadGuardError` unless `code` is `TG_OK`.
  if code != TG_OK:
    raise newThreadGuardError(code.toStatus, op)

# ---------------------------------------------------------------------------------------
# Process and thread preparation
# ---------------------------------------------------------------------------------------

when appType == "staticlib":
  proc NimMain() {.importc, cdecl.}

var
  initState: int  # 0: not started, 1: running, 2: done
  exitKey: Pthread_key
  exitKeyReady: bool

var threadReady {.threadvar.}: bool

proc threadExited(value: pointer) {.noconv.} =
  # Runs as a POSIX thread-specific-data destructor on a foreign thread that is exiting.
  # Destroy what the thread still owns while its Nim heap exists (a no-op when threadguard's
  # own exit hook already ran), then give the heap back (refc and markAndSweep; a no-op for
  # ARC and ORC, and on threads Nim created).
  discard tg_thread_cleanup()
  threadReady = false
  when usesStackScanningGc:
    tearDownForeignThreadGc()
  elif defined(gcOrc):
    # A cycle collection also frees the thread's cycle-candidate buffer.
    try:
      GC_fullCollect()
    except Exception:
      discard

when usesStackScanningGc:
  proc cleanupAtNimThreadExit() {.nimcall, gcsafe, raises: [].} =
    discard tg_thread_cleanup()

proc initProcess() =
  var expected = 0
  if atomicCompareExchangeN(addr initState, addr expected, 1, false, ATOMIC_ACQ_REL,
                            ATOMIC_ACQUIRE):
    when appType == "staticlib":
      NimMain()
    exitKeyReady = pthread_key_create(addr exitKey, threadExited) == 0
    atomicStoreN(addr initState, 2, ATOMIC_RELEASE)
  else:
    while atomicLoadN(addr initState, ATOMIC_ACQUIRE) != 2:
      discard sched_yield()

proc armThreadExit() {.raises: [], gcsafe.} =
  ## Once per thread: makes sure what the thread owns is destroyed while its Nim heap exists,
  ## and that a foreign thread's heap is given back when it exits.
  if atomicLoadN(addr initState, ATOMIC_ACQUIRE) != 2:
    initProcess()
  threadReady = true
  # Create threadguard's state for this thread before arming the exit hook below.
  discard tg_current_thread_id()
  if exitKeyReady:
    discard pthread_setspecific(exitKey, cast[pointer](1))
  when usesStackScanningGc:
    # Threads created by Nim (createThread) free their refc heap before thread-local
    # destructors run: destroy what they own while the heap is still there. (Under ARC
    # and ORC the heap outlives the thread's thread-local destructors.)
    onThreadDestruction(cleanupAtNimThreadExit)

proc prepareThread*(stackMarker: pointer) {.raises: [], gcsafe.} =
  ## Readies the calling thread to run Nim code that C called: initialises the Nim runtime
  ## once per process (static libraries), sets up this thread's GC if it is a foreign thread
  ## and widens the GC's stack range up to `stackMarker` (refc, markAndSweep), and on first use
  ## arranges the thread's exit (see the module doc). `stackMarker` must be the address of a
  ## local in a frame that holds no GC'd references and encloses every frame that does; the
  ## `tgExport` pragma arranges exactly that. Cheap after the first call on a thread.
  if atomicLoadN(addr initState, ATOMIC_ACQUIRE) != 2:
    initProcess()
  when usesStackScanningGc:
    setupForeignThreadGc()
    nimGC_setStackBottom(stackMarker)
  if not threadReady:
    armThreadExit()

macro tgExport*(name: static[string], p: untyped): untyped =
  ## Turns `p` into a C entry point named `name`: `{.exportc, cdecl, raises: [], gcsafe.}`,
  ## with `prepareThread` run first. The body moves into a separate non-inlined proc, so every
  ## GC'd value it creates lives in frames below the marker (refc scans exactly that range).
  ##
  ## .. code-block:: nim
  ##   proc store_count(h: TgHandle, outp: ptr uint64): TgCode {.tgExport: "store_count".} =
  ##     ...
  p.expectKind nnkProcDef
  let implName = genSym(nskProc, name & "Impl")
  var impl = copyNimTree(p)
  impl.name = implName
  impl.pragma = nnkPragma.newTree(ident"noinline", nnkExprColonExpr.newTree(ident"raises",
    nnkBracket.newTree()), ident"gcsafe")
  var call = newCall(implName)
  for i in 1 ..< p.params.len:
    for j in 0 ..< p.params[i].len - 2:
      call.add p.params[i][j]
  let marker = genSym(nskVar, "stackMarker")
  let body = newStmtList(
    nnkVarSection.newTree(nnkIdentDefs.newTree(
      nnkPragmaExpr.newTree(marker, nnkPragma.newTree(ident"volatile")),
      ident"pointer", newNilLit())),
    newCall(bindSym"prepareThread", nnkAddr.newTree(marker)))
  let hasResult = p.params[0].kind != nnkEmpty and not p.params[0].eqIdent("void")
  if hasResult:
    body.add newAssignment(ident"result", call)
  else:
    body.add call
  var outer = copyNimTree(p)
  outer.body = body
  var pragmas = if p.pragma.kind == nnkPragma: copyNimTree(p.pragma) else: nnkPragma.newTree()
  pragmas.add nnkExprColonExpr.newTree(ident"exportc", newLit(name))
  pragmas.add ident"cdecl"
  pragmas.add nnkExprColonExpr.newTree(ident"raises", nnkBracket.newTree())
  pragmas.add ident"gcsafe"
  outer.pragma = pragmas
  result = newStmtList(impl, outer)

# ---------------------------------------------------------------------------------------
# Guarded ref objects
# ---------------------------------------------------------------------------------------

type
  DestroyHook*[T] = proc (obj: T) {.nimcall, raises: [], gcsafe.}
    ## Called on the owner thread just before the registry's reference is dropped.

template guardedType*(T: typedesc, tag: static[uint32], hook: untyped) =
  ## Declares `T` (a `ref` type) guardable under the nonzero type `tag`, with a `hook` (a
  ## `DestroyHook[T]`, or `nil`) that sees each object as it is destroyed. One tag per type,
  ## unique in the process: the tag is what makes a handle of another type fail with
  ## `tgErrWrongType`.
  static:
    doAssert tag != 0, "threadguard type tag 0 is reserved"
    doAssert T is ref, "guardedType needs a ref type"
  proc tgTypeTag*(_: typedesc[T]): uint32 {.inline.} = tag
  proc tgDestroyHook*(_: typedesc[T]): DestroyHook[T] {.inline.} = hook

template guardedType*(T: typedesc, tag: static[uint32]) =
  ## `guardedType` without a destroy hook.
  guardedType(T, tag, nil)

proc releaseRef[T](obj: pointer) {.noinline, raises: [], gcsafe.} =
  mixin tgDestroyHook
  let x {.cursor.} = cast[T](obj)
  let hook = tgDestroyHook(T)
  if hook != nil:
    hook(x)
  GC_unref(x)

proc destroyRef[T](obj: pointer) {.cdecl, raises: [], gcsafe.} =
  # The destructor threadguard runs on the owner thread, possibly from C code or from the
  # thread's exit hook, so it is an entry point of its own.
  var marker {.volatile.}: pointer = nil
  prepareThread(addr marker)
  releaseRef[T](obj)

proc tryRegister*[T: ref](obj: T, handle: var TgHandle): TgStatus {.raises: [], gcsafe.} =
  ## Registers `obj` on the calling thread, which becomes its owner, and stores its handle.
  ## The registry holds a `GC_ref` until the object is destroyed (`tryDestroy`,
  ## `tryDestroyLater`, thread cleanup or thread exit). On error nothing is registered and the
  ## reference is dropped again: `tgErrNullPointer` for a nil `obj` (no `lastError` text),
  ## `tgErrShutDown` while the thread is destroying everything it owns.
  mixin tgTypeTag
  if obj.isNil:
    return tgErrNullPointer
  if not threadReady:
    armThreadExit()
  GC_ref(obj)
  result = tg_register(tgTypeTag(T), cast[pointer](obj), destroyRef[T], addr handle).toStatus
  if result != tgOk:
    GC_unref(obj)

proc register*[T: ref](obj: T): TgHandle {.raises: [ThreadGuardError], gcsafe.} =
  ## As `tryRegister`, raising `ThreadGuardError` on refusal.
  let status = tryRegister(obj, result)
  if status != tgOk:
    raise newThreadGuardError(status, "register")

type
  BorrowContext[T] = object
    fn: proc (obj: T) {.closure, gcsafe, raises: [].}
  RaisingContext[T] = object
    fn: proc (obj: T) {.closure, gcsafe, raises: [CatchableError].}
    error: ref CatchableError

proc borrowTrampoline[T](obj, context: pointer) {.cdecl, raises: [], gcsafe.} =
  let x {.cursor.} = cast[T](obj)
  cast[ptr BorrowContext[T]](context).fn(x)

proc raisingTrampoline[T](obj, context: pointer) {.cdecl, raises: [], gcsafe.} =
  let x {.cursor.} = cast[T](obj)
  let ctx = cast[ptr RaisingContext[T]](context)
  try:
    ctx.fn(x)
  except CatchableError as e:
    ctx.error = e

proc borrowWith[T](handle: TgHandle, fn: proc (obj: T) {.closure, gcsafe, raises: [].}): TgStatus {.
    raises: [], gcsafe.} =
  mixin tgTypeTag
  var ctx = BorrowContext[T](fn: fn)
  tg_with(handle, tgTypeTag(T), borrowTrampoline[T], addr ctx).toStatus

proc borrowRaising[T](handle: TgHandle, fn: proc (obj: T) {.closure, gcsafe,
    raises: [CatchableError].}) {.raises: [CatchableError], gcsafe.} =
  mixin tgTypeTag
  var ctx = RaisingContext[T](fn: fn)
  let status = tg_with(handle, tgTypeTag(T), raisingTrampoline[T], addr ctx).toStatus
  if status != tgOk:
    raise newThreadGuardError(status, "borrow")
  if ctx.error != nil:
    raise ctx.error

template tryBorrow*(handle: TgHandle, T: typedesc, obj: untyped, body: untyped): TgStatus =
  ## Runs `body` with `obj: T` bound to the object `handle` names, on the owner thread, and
  ## returns `tgOk`; or, without running `body`, the refusal (`tgErrWrongThread`,
  ## `tgErrStale`, `tgErrWrongType`, `tgErrBusy`...; detail in `lastError()`). `body` must
  ## not raise. Do not keep `obj` beyond `body` unless you copy the ref.
  borrowWith[T](handle, proc (obj: T) {.closure, gcsafe.} = body)

template borrow*(handle: TgHandle, T: typedesc, obj: untyped, body: untyped) =
  ## As `tryBorrow`, raising `ThreadGuardError` on refusal; an exception `body` raises is
  ## caught on the owner thread and re-raised here, after the borrow has ended.
  borrowRaising[T](handle, proc (obj: T) {.closure, gcsafe.} = body)

proc tryCheckType*[T: ref](handle: TgHandle): TgStatus {.raises: [], gcsafe.} =
  ## Whether `handle` names a live `T` owned by the calling thread (borrows it for nothing).
  tryBorrow(handle, T, obj):
    discard obj

proc tryDestroy*[T: ref](handle: TgHandle): TgStatus {.raises: [], gcsafe.} =
  ## Destroys the `T` that `handle` names, now, on its owner (the calling thread). The type is
  ## checked first, so a handle of another type is refused (`tgErrWrongType`) and untouched.
  result = tryCheckType[T](handle)
  if result == tgOk:
    result = tg_destroy(handle).toStatus
    if result == tgErrStale:
      # The check's borrow ran this thread's queued destroy requests as it ended (as every
      # successful borrow does), and one of them (or a destructor it ran) destroyed this
      # object: it was destroyed during this call, on its owner, once.
      result = tgOk

proc destroy*[T: ref](handle: TgHandle) {.raises: [ThreadGuardError], gcsafe.} =
  ## As `tryDestroy`, raising `ThreadGuardError` on refusal.
  let status = tryDestroy[T](handle)
  if status != tgOk:
    raise newThreadGuardError(status, "destroy")

proc tryDestroyLater*[T: ref](handle: TgHandle): TgStatus {.raises: [], gcsafe.} =
  ## Asks the owner to destroy the `T` that `handle` names; callable from any thread (a
  ## finalizer, say). The owner does it right after its next successful register, borrow or
  ## destroy, at `tg_run_pending`, at cleanup or at its exit. Called on the owner, the type
  ## and liveness are checked first (`tgErrWrongType`, `tgErrStale`); other threads cannot see
  ## the owner's table, so a request for an object that is gone is dropped (and counted) when
  ## it runs.
  if handle.owner != 0 and handle.owner == tg_current_thread_id():
    result = tryCheckType[T](handle)
    if result != tgOk:
      return
    result = tg_destroy_later(handle).toStatus
    if result == tgErrStale:
      # As in `tryDestroy`: the check's borrow ran the queued requests as it ended, and they
      # destroyed this object; what was asked for is done.
      result = tgOk
    return
  result = tg_destroy_later(handle).toStatus

proc destroyLater*[T: ref](handle: TgHandle) {.raises: [ThreadGuardError], gcsafe.} =
  ## As `tryDestroyLater`, raising `ThreadGuardError` on refusal.
  let status = tryDestroyLater[T](handle)
  if status != tgOk:
    raise newThreadGuardError(status, "destroyLater")

proc ownerOf*(handle: TgHandle): uint64 {.raises: [ThreadGuardError], gcsafe.} =
  ## The threadguard ID of the thread that owns `handle`.
  check(tg_owner_of(handle, addr result), "ownerOf")

proc currentThreadId*(): uint64 {.raises: [], gcsafe.} =
  ## The calling thread's threadguard ID (nonzero, never reused).
  tg_current_thread_id()

proc runPending*() {.raises: [ThreadGuardError], gcsafe.} =
  ## Runs the destroy requests other threads queued for the calling thread.
  check(tg_run_pending(), "runPending")

proc cleanupThread*() {.raises: [ThreadGuardError], gcsafe.} =
  ## Destroys everything the calling thread owns, now. Other threads do this when they exit
  ## (foreign and `createThread` threads alike); the main thread's exit hooks do not run, so
  ## call it there before `main` returns, or anywhere to release everything early.
  check(tg_thread_cleanup(), "cleanupThread")

proc stats*(): TgStats {.raises: [], gcsafe.} =
  ## A snapshot of the process-wide counters.
  discard tg_get_stats(addr result)
