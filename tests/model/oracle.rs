//! The reference model: what each thread owns, plainly, and what every call must therefore do.
//!
//! The model keeps a map of objects (owner, kind, live, busy) and, per thread, its inbox of
//! deferred destroy requests, its borrow depth and whether it is destroying everything it owns.
//! It replays each step against the trace the real execution recorded and fails at the first
//! difference: every status code, every callback's object, every destructor run (which object,
//! on which thread, exactly once) and every handle the library issues.
//!
//! The one thing it does not predict is the order in which a cleanup or a thread exit sweeps
//! the objects that remain (table order); there it takes the order from the trace and checks
//! that each object swept is live, owned by the sweeping thread and swept once, and that the
//! sweep leaves nothing behind.
//!
//! Forged keys resolve only with negligible probability (about n / 2^63), so a handle that is
//! not exactly one the library issued is stale on its owner thread.

use super::ops::{
    Api, DestroyHow, Event, HandleRef, ObjId, ObjectKind, OnDrop, Op, RUST_PANIC, RustType, Site, TokenRef,
};
use std::collections::{BTreeMap, HashMap, HashSet};
use threadguard::{Handle, SETTLED_MEMORY, Stats, Status, Token};

const OK: i32 = 0;

/// One object, as the model sees it.
#[derive(Clone, Debug)]
pub struct ObjModel {
    pub owner: u64,
    pub kind: ObjectKind,
    /// `None` between the registration and the moment the handle is returned.
    pub handle: Option<Handle>,
    pub live: bool,
    pub busy: bool,
    pub on_drop: OnDrop,
}

/// One token a detach issued.
#[derive(Clone, Debug)]
pub struct TokenModel {
    pub token: Token,
    pub obj: ObjId,
    /// When it was adopted or destroyed (the number of tokens settled before it), if it was.
    pub settled: Option<usize>,
}

/// One worker thread, as the model sees it.
#[derive(Clone, Debug, Default)]
pub struct ThreadModel {
    pub alive: bool,
    /// Keys queued by `destroy_later`, oldest first.
    pub inbox: Vec<u64>,
    /// Set at exit: requests are then refused (the thread's own ones silently).
    pub closed: bool,
    /// How many cleanups (or the exit) are in progress on this thread: registrations are
    /// refused while it is not 0.
    pub cleaning: u32,
    /// Borrows on this thread's stack.
    pub depth: u32,
}

/// The counters the model predicts, as deltas since the program started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub created: u64,
    pub destroyed: u64,
    pub panics: u64,
    /// By status code 1..=8.
    pub violations: [u64; 8],
}

/// Where an owner ID stands.
enum Owner {
    Live,
    Exited,
    NeverIssued,
}

/// One line of the program's transcript, formatted only for a failure report.
#[derive(Clone, Debug)]
pub enum Line {
    /// Step `step` of the program ran `op` on `thread`.
    Op { step: usize, thread: u64, op: Op },
    /// After the program's last step, `op` ran on `thread`.
    End { thread: u64, op: Op },
    /// `thread` exited (at step `step`).
    Exit { step: usize, thread: u64 },
    /// A new thread took `slot`.
    Slot { slot: usize, thread: u64 },
}

impl std::fmt::Display for Line {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Line::Op { step, thread, op } => write!(f, "#{step} thread {thread}: {op:?}"),
            Line::End { thread, op } => write!(f, "end: thread {thread}: {op:?}"),
            Line::Exit { step, thread } => write!(f, "#{step} thread {thread}: exit"),
            Line::Slot { slot, thread } => write!(f, "   slot {slot} is now thread {thread}"),
        }
    }
}

/// The model, with the trace of the step being replayed.
pub struct Model {
    pub threads: BTreeMap<u64, ThreadModel>,
    pub objects: BTreeMap<ObjId, ObjModel>,
    by_handle: HashMap<Handle, ObjId>,
    issued: HashSet<Handle>,
    pub counts: Counts,
    /// Handles registered during the current step, in order.
    step_new: Vec<Handle>,
    /// The largest thread ID issued in this process so far (all issued IDs below it that are
    /// not live workers belong to exited threads: only workers use the library here).
    pub max_thread_id: u64,
    next_obj: ObjId,
    trace: Vec<Event>,
    pos: usize,
    /// What the program did so far, for failure reports.
    pub transcript: Vec<Line>,
    /// How often each status came back (by code).
    pub seen: BTreeMap<i32, u64>,
    /// Tokens issued, in order; how many were settled; the old handles of detached objects.
    pub tokens: Vec<TokenModel>,
    settled: usize,
    detached_from: HashMap<Handle, usize>,
    /// Successful adoptions.
    pub adopted: usize,
}

impl Model {
    pub fn new(max_thread_id: u64) -> Model {
        Model {
            threads: BTreeMap::new(),
            objects: BTreeMap::new(),
            by_handle: HashMap::new(),
            issued: HashSet::new(),
            counts: Counts::default(),
            step_new: Vec::new(),
            max_thread_id,
            next_obj: 1,
            trace: Vec::new(),
            pos: 0,
            transcript: Vec::new(),
            seen: BTreeMap::new(),
            tokens: Vec::new(),
            settled: 0,
            detached_from: HashMap::new(),
            adopted: 0,
        }
    }

    /// A fresh object number.
    pub fn alloc_obj(&mut self) -> ObjId {
        let obj = self.next_obj;
        self.next_obj += 1;
        obj
    }

    /// A worker thread started with this ID.
    pub fn thread_started(&mut self, id: u64) {
        if id <= self.max_thread_id || self.threads.contains_key(&id) {
            self.fail(format!("new thread got ID {id}, not above every ID issued before ({})", self.max_thread_id));
        }
        self.max_thread_id = id;
        self.threads.insert(id, ThreadModel { alive: true, ..ThreadModel::default() });
    }

    /// A worker thread kept from an earlier program: alive, owning nothing, nothing queued
    /// (that program ended with a cleanup and a run_pending on it, checked like any op).
    pub fn thread_carried_over(&mut self, id: u64) {
        if id == 0 || id > self.max_thread_id || self.threads.contains_key(&id) {
            self.fail(format!("kept thread {id} is not one issued before ({})", self.max_thread_id));
        }
        self.threads.insert(id, ThreadModel { alive: true, ..ThreadModel::default() });
    }

    /// Panics with the difference, the program so far and the step's trace.
    #[track_caller]
    pub fn fail(&self, what: String) -> ! {
        let start = self.transcript.len().saturating_sub(40);
        let mut report = format!("threadguard model mismatch: {what}\n--- program (last steps) ---\n");
        for line in &self.transcript[start..] {
            report.push_str(&format!("{line}\n"));
        }
        report.push_str("--- trace of the last step ---\n");
        for (index, event) in self.trace.iter().enumerate() {
            let marker = if index == self.pos { "=> " } else { "   " };
            report.push_str(&format!("{marker}{event:?}\n"));
        }
        if self.pos >= self.trace.len() {
            report.push_str("=> (end of trace)\n");
        }
        panic!("{report}");
    }

    /// Objects whose handle is known, in creation order.
    pub fn known_objects(&self) -> impl Iterator<Item = (&ObjId, &ObjModel)> {
        self.objects.iter().filter(|(_, object)| object.handle.is_some())
    }

    pub fn resolve(&self, handle: HandleRef) -> Handle {
        match handle {
            HandleRef::Fixed(handle) => handle,
            HandleRef::StepNew(index) => self.step_new.get(index).copied().unwrap_or(Handle::NULL),
        }
    }

    fn thread(&mut self, id: u64) -> &mut ThreadModel {
        self.threads.get_mut(&id).expect("a known thread")
    }

    fn owner_state(&self, id: u64) -> Owner {
        match self.threads.get(&id) {
            Some(thread) if thread.alive => Owner::Live,
            _ if id != 0 && id <= self.max_thread_id => Owner::Exited,
            _ => Owner::NeverIssued,
        }
    }

    /// The library's first checks: null, owner, slot. `Ok` names a live object of `t`.
    fn check(&self, t: u64, handle: Handle) -> Result<ObjId, Status> {
        if handle == Handle::NULL {
            return Err(Status::NullHandle);
        }
        if handle.owner != t {
            return Err(self.foreign(handle));
        }
        self.live_of(handle).ok_or(Status::Stale)
    }

    /// The refusal of a handle owned by another thread (`foreign_owner`).
    fn foreign(&self, handle: Handle) -> Status {
        if self.remembered(handle) {
            return Status::Stale;
        }
        match self.owner_state(handle.owner) {
            Owner::Live => Status::WrongThread,
            Owner::Exited => Status::OwnerExited,
            Owner::NeverIssued => Status::Stale,
        }
    }

    /// The object `handle` names in its owner's table, if it is there.
    fn live_of(&self, handle: Handle) -> Option<ObjId> {
        let obj = *self.by_handle.get(&handle)?;
        let object = &self.objects[&obj];
        (object.live && object.owner == handle.owner && object.handle == Some(handle)).then_some(obj)
    }

    /// Whether the token registry remembers `handle` as detached: its token is in flight, or
    /// among the last `SETTLED_MEMORY` settled (older ones were settled in earlier programs).
    fn remembered(&self, handle: Handle) -> bool {
        match self.detached_from.get(&handle) {
            Some(&index) => match self.tokens[index].settled {
                None => true,
                Some(order) => self.settled - order <= SETTLED_MEMORY,
            },
            None => false,
        }
    }

    /// The token `which` names now, or the refusal of it (null, forged, settled).
    fn token(&self, which: TokenRef) -> Result<usize, Status> {
        match which.pick(self.tokens.len()) {
            (None, _) => Err(Status::NullHandle),
            (Some(_), true) => Err(Status::Stale),
            (Some(index), false) if self.tokens[index].settled.is_some() => Err(Status::Stale),
            (Some(index), false) => Ok(index),
        }
    }

    fn settle(&mut self, index: usize) {
        self.tokens[index].settled = Some(self.settled);
        self.settled += 1;
    }

    /// Tokens neither adopted nor destroyed.
    pub fn in_flight(&self) -> Vec<usize> {
        (0..self.tokens.len()).filter(|&index| self.tokens[index].settled.is_none()).collect()
    }

    fn violation(&mut self, status: Status) -> i32 {
        if status.is_violation() {
            self.counts.violations[status.code() as usize - 1] += 1;
        }
        status.code()
    }

    // ----- the trace -----

    /// The next event of the trace; `expected` says what the model expects there (formatted
    /// only for a failure report).
    fn next_event(&mut self, expected: impl std::fmt::Display) -> Event {
        match self.trace.get(self.pos) {
            Some(event) => {
                self.pos += 1;
                event.clone()
            }
            None => self.fail(format!("expected {expected}, but the trace ended")),
        }
    }

    fn expect(&mut self, expected: Event) {
        let actual = self.next_event(format_args!("{expected:?}"));
        if actual != expected {
            self.pos -= 1;
            self.fail(format!("expected {expected:?}, got {actual:?}"));
        }
    }

    fn expect_status(&mut self, site: Site, code: i32, value: Option<u64>) {
        let event = self.next_event(format_args!("a status {code} at {site:?}"));
        let Event::Status { site: actual_site, code: actual, message, value: actual_value } = event else {
            self.pos -= 1;
            self.fail(format!("expected status {} at {site:?}, got another event", name(code)));
        };
        if actual_site != site || actual != code {
            self.pos -= 1;
            self.fail(format!("expected status {} at {site:?}, got {} at {actual_site:?}", name(code), name(actual)));
        }
        *self.seen.entry(code).or_default() += 1;
        if code > 0 && message.is_empty() {
            self.fail(format!("status {} came without an error message", name(code)));
        }
        let keyword = match Status::from_code(code) {
            Some(Status::WrongThread) => "alive",
            Some(Status::OwnerExited) => "exit",
            Some(Status::Panic) => "panic",
            _ => "",
        };
        if !message.contains(keyword) {
            self.fail(format!("message of {} does not say {keyword:?}: {message:?}", name(code)));
        }
        if let Some(value) = value
            && actual_value != value
        {
            self.fail(format!("the call wrote {actual_value}, expected {value}"));
        }
    }

    fn expect_dropped(&mut self, obj: ObjId, thread: u64) {
        self.expect(Event::Dropped { obj, thread });
    }

    // ----- steps -----

    /// Replays a top-level op run on thread `t` against its trace.
    pub fn replay_op(&mut self, t: u64, op: &Op, trace: Vec<Event>) {
        self.start_step(trace);
        self.op(t, op, Site::Op);
        self.end_step();
    }

    /// Replays the exit of thread `t` against its trace.
    pub fn replay_exit(&mut self, t: u64, trace: Vec<Event>) {
        self.start_step(trace);
        let thread = self.thread(t);
        thread.cleaning += 1;
        thread.closed = true;
        let queued = std::mem::take(&mut thread.inbox);
        self.run_requests(t, queued);
        self.destroy_all(t);
        let thread = self.thread(t);
        thread.alive = false;
        thread.inbox.clear();
        self.end_step();
        if let Some((obj, _)) = self.objects.iter().find(|(_, object)| object.owner == t && object.live) {
            self.fail(format!("object {obj} survived the exit of its owner {t}"));
        }
    }

    fn start_step(&mut self, trace: Vec<Event>) {
        self.trace = trace;
        self.pos = 0;
        self.step_new.clear();
    }

    fn end_step(&mut self) {
        if self.pos != self.trace.len() {
            self.fail("the step did more than the model predicts".to_owned());
        }
    }

    /// Compares the library's counters with the model's (deltas since `base`).
    pub fn check_stats(&self, base: &Stats, now: &Stats) {
        let delta = |now: u64, base: u64| now.wrapping_sub(base);
        let violations = [
            delta(now.violations_null_handle, base.violations_null_handle),
            delta(now.violations_wrong_thread, base.violations_wrong_thread),
            delta(now.violations_owner_exited, base.violations_owner_exited),
            delta(now.violations_stale, base.violations_stale),
            delta(now.violations_wrong_type, base.violations_wrong_type),
            delta(now.violations_busy, base.violations_busy),
            delta(now.violations_null_pointer, base.violations_null_pointer),
            delta(now.violations_invalid_argument, base.violations_invalid_argument),
        ];
        let actual = Counts {
            created: delta(now.created, base.created),
            destroyed: delta(now.destroyed, base.destroyed),
            panics: delta(now.panics, base.panics),
            violations,
        };
        if actual != self.counts {
            self.fail(format!("counters differ:\n  library {actual:?}\n  model   {:?}", self.counts));
        }
        let pending: u64 = self.threads.values().filter(|t| t.alive).map(|t| t.inbox.len() as u64).sum();
        let actual_pending = delta(now.deferred_pending, base.deferred_pending);
        if actual_pending != pending {
            self.fail(format!("deferred_pending is {actual_pending}, the model has {pending} queued"));
        }
        let detached = self.in_flight().len() as u64;
        if delta(now.detached, base.detached) != detached {
            self.fail(format!(
                "detached is {}, the model has {detached} tokens in flight",
                delta(now.detached, base.detached)
            ));
        }
        let live = self.objects.values().filter(|object| object.live).count() as u64;
        if delta(now.live, base.live) != live {
            self.fail(format!("live is {} above the start, the model has {live}", delta(now.live, base.live)));
        }
    }

    // ----- operations -----

    fn op(&mut self, t: u64, op: &Op, site: Site) {
        let (code, value) = self.predict(t, op);
        self.expect_status(site, code, value);
    }

    /// Simulates `op` on thread `t`, consuming the events it causes before its status;
    /// returns the status and the value it writes, if checked.
    fn predict(&mut self, t: u64, op: &Op) -> (i32, Option<u64>) {
        match op {
            Op::Register { kind, obj, null_out, on_drop } => (self.register(t, *kind, *obj, *null_out, on_drop), None),
            Op::With { api, handle, tag, rust, null_fn, body } => {
                let handle = self.resolve(*handle);
                let obj = match self.check(t, handle) {
                    Ok(obj) => obj,
                    Err(status) => return (self.violation(status), None),
                };
                let object = &self.objects[&obj];
                let type_ok = match api {
                    Api::C => object.kind == ObjectKind::C { tag: *tag },
                    Api::Rust => object.kind == ObjectKind::Rust(*rust),
                    Api::Export => object.kind == ObjectKind::Export,
                };
                if !type_ok {
                    return (self.violation(Status::WrongType), None);
                }
                if object.busy {
                    return (self.violation(Status::Busy), None);
                }
                if *null_fn && *api != Api::Rust {
                    return (self.violation(Status::NullPointer), None);
                }
                self.objects.get_mut(&obj).expect("live").busy = true;
                self.thread(t).depth += 1;
                self.expect(Event::Callback { obj });
                for nested in &body.ops {
                    self.op(t, nested, Site::Op);
                }
                self.objects.get_mut(&obj).expect("still there: a busy object cannot be destroyed").busy = false;
                self.thread(t).depth -= 1;
                if body.panic {
                    // The panic skips the pending run after the call.
                    return match api {
                        Api::Rust => (RUST_PANIC, None),
                        _ => {
                            self.counts.panics += 1;
                            (Status::Panic.code(), None)
                        }
                    };
                }
                self.after_success(t);
                (OK, (*api == Api::Export).then_some(obj))
            }
            Op::Destroy { how, handle } => {
                let handle = self.resolve(*handle);
                let obj = match self.check(t, handle) {
                    Ok(obj) => obj,
                    Err(status) => return (self.violation(status), None),
                };
                let object = &self.objects[&obj];
                let type_ok = match how {
                    DestroyHow::C | DestroyHow::Rust => true,
                    DestroyHow::RustAs(rust) => object.kind == ObjectKind::Rust(*rust),
                    DestroyHow::Export => object.kind == ObjectKind::Export,
                };
                if !type_ok {
                    return (self.violation(Status::WrongType), None);
                }
                if object.busy {
                    return (self.violation(Status::Busy), None);
                }
                let panicked = self.destroy_object(t, obj);
                // The pending run follows a destroy even if its destructor panicked.
                self.after_success(t);
                (if panicked { Status::Panic.code() } else { OK }, None)
            }
            Op::DestroyLater { handle, .. } => {
                let handle = self.resolve(*handle);
                if handle == Handle::NULL {
                    return (self.violation(Status::NullHandle), None);
                }
                if handle.owner == t {
                    if let Err(status) = self.check(t, handle) {
                        return (self.violation(status), None);
                    }
                    let thread = self.thread(t);
                    if !thread.closed {
                        thread.inbox.push(handle.key);
                    }
                    return (OK, None);
                }
                match self.owner_state(handle.owner) {
                    Owner::Live => {
                        self.thread(handle.owner).inbox.push(handle.key);
                        (OK, None)
                    }
                    _ => {
                        let status = self.foreign(handle);
                        (self.violation(status), None)
                    }
                }
            }
            Op::RunPending { .. } => (self.run_pending(t), None),
            Op::Cleanup { .. } => {
                if self.thread(t).depth > 0 {
                    return (self.violation(Status::Busy), None);
                }
                (self.destroy_all(t), None)
            }
            Op::OwnerOf { api, handle, null_out } => {
                let handle = self.resolve(*handle);
                if handle.owner == t || handle == Handle::NULL {
                    if let Err(status) = self.check(t, handle) {
                        return (self.violation(status), None);
                    }
                } else {
                    match self.owner_state(handle.owner) {
                        Owner::Live => {}
                        _ => {
                            let status = self.foreign(handle);
                            return (self.violation(status), None);
                        }
                    }
                }
                if *null_out && *api != Api::Rust {
                    return (self.violation(Status::NullPointer), None);
                }
                (OK, Some(handle.owner))
            }
            Op::Detach { api, handle, tag, rust, null_out } => {
                let handle = self.resolve(*handle);
                let obj = match self.check(t, handle) {
                    Ok(obj) => obj,
                    Err(status) => return (self.violation(status), None),
                };
                let object = &self.objects[&obj];
                let type_ok = match api {
                    Api::Rust => object.kind == ObjectKind::Rust(*rust),
                    _ => object.kind == ObjectKind::C { tag: *tag },
                };
                if !type_ok {
                    return (self.violation(Status::WrongType), None);
                }
                if object.busy {
                    return (self.violation(Status::Busy), None);
                }
                if *null_out && *api != Api::Rust {
                    return (self.violation(Status::NullPointer), None);
                }
                // The requests already queued run first, and may destroy (or detach) it.
                self.after_success(t);
                if self.live_of(handle) != Some(obj) {
                    return (self.violation(Status::Stale), None);
                }
                let event = self.next_event("a detach's token");
                let Event::Detached { token } = event else {
                    self.pos -= 1;
                    self.fail(format!("expected object {obj} to be detached, got {event:?}"));
                };
                if token.is_null() || self.tokens.iter().any(|issued| issued.token.id == token.id) {
                    self.fail(format!("detach issued token {token:?} twice (or null)"));
                }
                let object = self.objects.get_mut(&obj).expect("live");
                object.owner = 0;
                object.handle = None;
                self.detached_from.insert(handle, self.tokens.len());
                self.tokens.push(TokenModel { token, obj, settled: None });
                (OK, None)
            }
            Op::Adopt { api, token, rust, null_out } => {
                if *null_out && *api != Api::Rust {
                    return (self.violation(Status::NullPointer), None);
                }
                if self.thread(t).cleaning > 0 {
                    return (Status::ShutDown.code(), None);
                }
                let index = match self.token(*token) {
                    Ok(index) => index,
                    Err(status) => return (self.violation(status), None),
                };
                let obj = self.tokens[index].obj;
                if *api == Api::Rust && self.objects[&obj].kind != ObjectKind::Rust(*rust) {
                    return (self.violation(Status::WrongType), None);
                }
                let event = self.next_event("an adoption's handle");
                let Event::Adopted { handle } = event else {
                    self.pos -= 1;
                    self.fail(format!("expected object {obj} to be adopted, got {event:?}"));
                };
                if handle.owner != t || !self.issued.insert(handle) {
                    self.fail(format!(
                        "object {obj} adopted on thread {t} got handle {handle:?} (foreign or issued before)"
                    ));
                }
                self.by_handle.insert(handle, obj);
                let object = self.objects.get_mut(&obj).expect("detached, so live");
                object.owner = t;
                object.handle = Some(handle);
                self.step_new.push(handle);
                self.settle(index);
                self.adopted += 1;
                (OK, None)
            }
            Op::TokenDestroy { token, .. } => {
                let index = match self.token(*token) {
                    Ok(index) => index,
                    Err(status) => return (self.violation(status), None),
                };
                self.settle(index);
                let obj = self.tokens[index].obj;
                let object = self.objects.get_mut(&obj).expect("detached, so live");
                object.live = false;
                let (kind, on_drop) = (object.kind, object.on_drop.clone());
                self.counts.destroyed += 1;
                if self.drop_value(t, obj, kind, &on_drop) {
                    self.counts.panics += 1;
                    return (Status::Panic.code(), None);
                }
                (OK, None)
            }
        }
    }

    fn register(&mut self, t: u64, kind: ObjectKind, obj: ObjId, null_out: bool, on_drop: &OnDrop) -> i32 {
        if null_out && kind != ObjectKind::Rust(RustType::A) && kind != ObjectKind::Rust(RustType::B) {
            return self.violation(Status::NullPointer);
        }
        if kind == (ObjectKind::C { tag: 0 }) {
            return self.violation(Status::InvalidArgument);
        }
        if self.thread(t).cleaning > 0 {
            if kind.is_native() {
                // The refused value is dropped here and now (its destructor action runs).
                self.drop_value(t, obj, kind, on_drop);
            }
            return Status::ShutDown.code();
        }
        self.counts.created += 1;
        self.objects
            .insert(obj, ObjModel { owner: t, kind, handle: None, live: true, busy: false, on_drop: on_drop.clone() });
        self.after_success(t);
        let event = self.next_event(format_args!("the registration of object {obj}"));
        let Event::Registered { obj: actual, handle } = event else {
            self.pos -= 1;
            self.fail(format!("expected object {obj} to be registered, got {event:?}"));
        };
        if actual != obj {
            self.fail(format!("expected object {obj} to be registered, got object {actual}"));
        }
        if handle.owner != t {
            self.fail(format!("object {obj} registered on thread {t} got handle {handle:?}"));
        }
        if !self.issued.insert(handle) {
            self.fail(format!("handle {handle:?} was issued twice"));
        }
        self.by_handle.insert(handle, obj);
        self.objects.get_mut(&obj).expect("just inserted").handle = Some(handle);
        self.step_new.push(handle);
        OK
    }

    /// Removes a live, idle object of `t` and runs its destructor; true if it panicked.
    fn destroy_object(&mut self, t: u64, obj: ObjId) -> bool {
        let object = self.objects.get_mut(&obj).expect("live");
        debug_assert!(object.live && !object.busy && object.owner == t);
        object.live = false;
        let (kind, on_drop) = (object.kind, object.on_drop.clone());
        self.counts.destroyed += 1;
        let panicked = self.drop_value(t, obj, kind, &on_drop);
        if panicked {
            self.counts.panics += 1;
        }
        panicked
    }

    /// The destructor of `obj` runs on `t`: the drop event, then its action. True if it panicked.
    fn drop_value(&mut self, t: u64, obj: ObjId, kind: ObjectKind, on_drop: &OnDrop) -> bool {
        self.expect_dropped(obj, t);
        match on_drop {
            OnDrop::Nothing => false,
            OnDrop::Panic => {
                assert!(kind.is_native(), "the decoder never gives a C object a panicking destructor");
                true
            }
            OnDrop::Run(ops) => {
                for op in ops {
                    self.op(t, op, Site::Drop(obj));
                }
                false
            }
        }
    }

    /// After a successful register, borrow or destroy at depth 0, the owner runs its inbox.
    /// (Only these three: a successful `destroy_later` or `owner_of` on the owner does not,
    /// nor do the calls that take no handle.)
    fn after_success(&mut self, t: u64) {
        let thread = self.thread(t);
        if thread.depth == 0 && !thread.inbox.is_empty() {
            self.run_pending(t);
        }
    }

    fn run_pending(&mut self, t: u64) -> i32 {
        let keys = std::mem::take(&mut self.thread(t).inbox);
        self.run_requests(t, keys)
    }

    /// Runs destroy requests in order: busy objects wait, gone ones count as stale.
    fn run_requests(&mut self, t: u64, keys: Vec<u64>) -> i32 {
        let mut panicked = false;
        for key in keys {
            let target = self.live_of(Handle { owner: t, key });
            match target {
                Some(obj) if self.objects[&obj].busy => {
                    let thread = self.thread(t);
                    if !thread.closed {
                        thread.inbox.push(key);
                    }
                }
                Some(obj) => panicked |= self.destroy_object(t, obj),
                None => {
                    self.violation(Status::Stale);
                }
            }
        }
        if panicked { Status::Panic.code() } else { OK }
    }

    /// Cleanup (and the end of an exit): run the inbox, then sweep every object in the order
    /// the trace shows, then drop requests queued meanwhile.
    fn destroy_all(&mut self, t: u64) -> i32 {
        self.thread(t).cleaning += 1;
        let mut status = self.run_pending(t);
        loop {
            let remaining: Vec<ObjId> = self
                .objects
                .iter()
                .filter(|(_, object)| object.owner == t && object.live)
                .map(|(&obj, _)| obj)
                .collect();
            if remaining.is_empty() {
                break;
            }
            let next = match self.trace.get(self.pos) {
                Some(Event::Dropped { obj, .. }) if remaining.contains(obj) => *obj,
                _ => self.fail(format!("expected the sweep of thread {t} to destroy one of {remaining:?}")),
            };
            if self.destroy_object(t, next) {
                status = Status::Panic.code();
            }
        }
        let thread = self.thread(t);
        thread.inbox.clear();
        // Registrations stay refused until the outermost cleanup (or the exit) is over.
        thread.cleaning -= 1;
        status
    }
}

fn name(code: i32) -> String {
    match code {
        OK => "TG_OK".to_owned(),
        RUST_PANIC => "a propagated panic".to_owned(),
        code => Status::from_code(code).map_or_else(|| format!("unknown code {code}"), |s| s.name().to_owned()),
    }
}
