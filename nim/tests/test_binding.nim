## Tests of the Nim binding (threadguard.nim) from a Nim program with Nim threads.
##
## Each check counts; the last line is "N passed, M failed" and the exit code is non-zero on any
## failure. Build with --threads:on and link libthreadguard.a (see nim/nim.mk).

import std/strutils
import ../threadguard

type
  Counter = ref object
    n: int
    label: string
    history: seq[string]
  Other = ref object
    x: int

var
  destroyedCounters: int     # hook runs
  destroyedOffOwner: int     # hook runs on a thread other than the creator
  lastDestroyedOn: uint64    # threadguard ID of the thread the last hook ran on
  creators: array[64, uint64] # creator thread by Counter.n (tests use n < 64 as an ID)

proc counterDestroyed(c: Counter) {.nimcall, raises: [], gcsafe.} =
  let here = currentThreadId()
  if c.n >= 0 and c.n < creators.len and creators[c.n] != here:
    discard atomicInc(destroyedOffOwner)
  atomicStoreN(addr lastDestroyedOn, here, ATOMIC_RELEASE)
  discard atomicInc(destroyedCounters)

guardedType(Counter, 0x4e544331'u32, counterDestroyed)
guardedType(Other, 0x4e544f31'u32)

var passed, failed: int

template check(cond: untyped) =
  if cond:
    inc passed
  else:
    inc failed
    echo "FAIL test_binding.nim(", instantiationInfo().line, "): ", astToStr(cond)

proc destroyed(): int = atomicLoadN(addr destroyedCounters, ATOMIC_ACQUIRE)

proc newCounter(id: int): Counter =
  creators[id] = currentThreadId()
  Counter(n: id, label: "counter " & $id)

proc registerFresh(id: int): TgHandle =
  ## The registry holds the only reference once this returns.
  register(newCounter(id))

proc makeGarbage() =
  var keep: seq[string]
  for i in 0 ..< 20_000:
    let s = "garbage " & $i
    if i mod 1000 == 0:
      keep.add s
  check keep.len == 20

proc ownerUse() =
  let h = registerFresh(1)
  check h.owner == currentThreadId()
  check ownerOf(h) == currentThreadId()
  for i in 0 ..< 3:
    makeGarbage()
    GC_fullCollect()
  var label = ""
  borrow(h, Counter, c):
    c.n += 0
    c.history.add "seen"
    label = c.label
  check label == "counter 1"
  var seen = 0
  let status = tryBorrow(h, Counter, c):
    seen = c.history.len
  check status == tgOk
  check seen == 1
  let before = destroyed()
  destroy[Counter](h)
  check destroyed() == before + 1
  check atomicLoadN(addr lastDestroyedOn, ATOMIC_ACQUIRE) == currentThreadId()
  try:
    destroy[Counter](h)
    check false
  except ThreadGuardError as e:
    check e.status == tgErrStale
    check e.detail.contains("names no live object")
  check tryCheckType[Counter](h) == tgErrStale

proc exceptionsAndReentrancy() =
  let h = registerFresh(2)
  try:
    borrow(h, Counter, c):
      c.label = "changed"
      raise newException(ValueError, "boom")
    check false
  except ValueError as e:
    check e.msg == "boom"
  except CatchableError:
    check false
  var nested = tgOk
  var label = ""
  let status = tryBorrow(h, Counter, c):
    label = c.label
    nested = tryCheckType[Counter](h)
  check status == tgOk
  check label == "changed"
  check nested == tgErrBusy
  check tryDestroy[Counter](h) == tgOk

proc wrongTypeAndNil() =
  let h = registerFresh(3)
  check tryCheckType[Other](h) == tgErrWrongType
  check tryDestroy[Other](h) == tgErrWrongType
  check tryDestroyLater[Other](h) == tgErrWrongType
  check lastError().contains("type tag")
  check tryCheckType[Counter](h) == tgOk
  var nothing: Counter
  var h2: TgHandle
  check tryRegister(nothing, h2) == tgErrNullPointer
  check tryCheckType[Counter](h2) == tgErrNullHandle
  destroy[Counter](h)
  check statusName(tgErrWrongThread) == "TG_ERR_WRONG_THREAD"
  check toStatus(99) == tgErrUnknown
  check code(tgErrStale) == TG_ERR_STALE
  check tgErrTimeout.code == TG_ERR_TIMEOUT

# --- Other threads ---------------------------------------------------------------------

type
  Probe = object
    handle: TgHandle
    status: TgStatus
    detailNamesOwner: bool # checked on the thread: its strings live on its own heap
    laterStatus: TgStatus
    threadId: uint64
    raised: bool

proc misuse(p: ptr Probe) {.thread.} =
  p.threadId = currentThreadId()
  try:
    borrow(p.handle, Counter, c):
      c.label = "stolen"
  except ThreadGuardError as e:
    p.raised = true
    p.status = e.status
    p.detailNamesOwner = e.detail.contains("is owned by thread")
  except CatchableError:
    discard
  p.laterStatus = tryDestroyLater[Counter](p.handle)

proc otherThreadsAreRefused() =
  var probe = Probe(handle: registerFresh(4))
  var t: Thread[ptr Probe]
  createThread(t, misuse, addr probe)
  joinThread(t)
  check probe.raised
  check probe.status == tgErrWrongThread
  check probe.detailNamesOwner
  check probe.laterStatus == tgOk
  var label = ""
  let before = destroyed()
  let status = tryBorrow(probe.handle, Counter, c):
    label = c.label
  check status == tgOk
  check label == "counter 4"
  # That successful call ran the queued destroy request, here on the owner.
  check destroyed() == before + 1
  check atomicLoadN(addr lastDestroyedOn, ATOMIC_ACQUIRE) == currentThreadId()
  check tryCheckType[Counter](probe.handle) == tgErrStale

proc ownAndExit(p: ptr Probe) {.thread.} =
  p.threadId = currentThreadId()
  for id in 10 ..< 20:
    let h = registerFresh(id)
    if id == 10:
      p.handle = h
  makeGarbage()
  GC_fullCollect()

proc nimThreadExitDestroysWhatItOwns() =
  var probe: Probe
  let before = destroyed()
  var t: Thread[ptr Probe]
  createThread(t, ownAndExit, addr probe)
  joinThread(t)
  check destroyed() == before + 10
  check atomicLoadN(addr lastDestroyedOn, ATOMIC_ACQUIRE) == probe.threadId
  check tryCheckType[Counter](probe.handle) == tgErrOwnerExited
  check tryDestroyLater[Counter](probe.handle) == tgErrOwnerExited

proc main() =
  ownerUse()
  exceptionsAndReentrancy()
  wrongTypeAndNil()
  otherThreadsAreRefused()
  nimThreadExitDestroysWhatItOwns()
  discard registerFresh(5)
  cleanupThread()
  check atomicLoadN(addr destroyedOffOwner, ATOMIC_ACQUIRE) == 0
  let s = stats()
  check s.live == 0
  check s.created == s.destroyed
  check s.deferred_pending == 0
  echo passed, " passed, ", failed, " failed"
  quit(if failed == 0: 0 else: 1)

main()
