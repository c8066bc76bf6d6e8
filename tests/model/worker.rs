//! Executing ops against the real library on worker threads, and recording what happened.
//!
//! Each slot has one OS thread of a `threadguard_fuzzkit::Crew`; one step runs at a time, on
//! its worker (see `run` in the module root), so execution is deterministic. Everything
//! observable (registrations, callbacks, destructor runs with their thread, statuses with their
//! messages) is appended to one trace, which the model replays.

use super::ops::{
    Api, Body, DestroyHow, Event, HandleRef, INTENTIONAL_PANIC, ObjId, ObjectKind, OnDrop, Op, RUST_PANIC,
};
use super::ops::{RustType, Site, TokenRef};
use std::cell::Cell;
use std::collections::HashMap;
use std::ffi::{c_char, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Mutex, MutexGuard};
use threadguard::ffi::{self, TG_OK};
use threadguard::{Error, Handle, Token};
use threadguard_fuzzkit::Crew;

/// The events of the current step.
static TRACE: Mutex<Vec<Event>> = Mutex::new(Vec::new());
/// What each object's destructor does, by object number (set before it is registered).
static ON_DROP: Mutex<Option<HashMap<ObjId, OnDrop>>> = Mutex::new(None);
/// Handles registered during the current step, in order (`HandleRef::StepNew`).
static STEP_NEW: Mutex<Vec<Handle>> = Mutex::new(Vec::new());
/// Bodies of the borrows of the current step; callbacks get an index into it as context.
static BODIES: Mutex<Vec<Body>> = Mutex::new(Vec::new());
/// Tokens issued by detaches in this program, in order.
static TOKENS: Mutex<Vec<Token>> = Mutex::new(Vec::new());

thread_local! {
    /// The threadguard ID of this worker, learned when it starts. `const` and without a
    /// destructor, so destructors that run at thread exit can still read it.
    static WORKER_ID: Cell<u64> = const { Cell::new(0) };
}

fn lock<T>(mutex: &'static Mutex<T>) -> MutexGuard<'static, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

fn record(event: Event) {
    lock(&TRACE).push(event);
}

/// Forgets everything a previous program left (call at program start, workers idle).
pub fn reset_program() {
    *lock(&ON_DROP) = Some(HashMap::new());
    lock(&TOKENS).clear();
    reset_step();
}

/// Starts a new step: empty trace, no step-local handles or bodies.
pub fn reset_step() {
    lock(&TRACE).clear();
    lock(&STEP_NEW).clear();
    lock(&BODIES).clear();
}

/// The events recorded since the step started.
pub fn take_trace() -> Vec<Event> {
    std::mem::take(&mut *lock(&TRACE))
}

fn resolve(handle: HandleRef) -> Handle {
    match handle {
        HandleRef::Fixed(handle) => handle,
        HandleRef::StepNew(index) => lock(&STEP_NEW).get(index).copied().unwrap_or(Handle::NULL),
    }
}

fn token(token: TokenRef) -> Token {
    let tokens = lock(&TOKENS);
    match token.pick(tokens.len()) {
        (None, _) => Token::NULL,
        (Some(at), false) => tokens[at],
        (Some(at), true) => Token { check: tokens[at].check ^ (1 << (at % 64)), ..tokens[at] },
    }
}

fn adopted(handle: Handle) {
    lock(&STEP_NEW).push(handle);
    record(Event::Adopted { handle });
}

fn registered(obj: ObjId, handle: Handle) {
    lock(&STEP_NEW).push(handle);
    record(Event::Registered { obj, handle });
}

/// Runs at every destructor (and every drop of a refused Rust value).
fn dropped(obj: ObjId, native: bool) {
    record(Event::Dropped { obj, thread: WORKER_ID.with(Cell::get) });
    let action = lock(&ON_DROP).as_ref().and_then(|map| map.get(&obj).cloned()).unwrap_or_default();
    match action {
        OnDrop::Nothing => {}
        OnDrop::Panic => {
            assert!(native, "the decoder never gives a C object a panicking destructor");
            std::panic::panic_any(INTENTIONAL_PANIC);
        }
        OnDrop::Run(ops) => {
            for op in &ops {
                exec(op, Site::Drop(obj));
            }
        }
    }
}

/// The Rust-side value of every Rust object: records its drop.
#[derive(Debug)]
pub struct Payload {
    pub obj: ObjId,
}

impl Drop for Payload {
    fn drop(&mut self) {
        dropped(self.obj, true);
    }
}

/// A Rust object registered with `threadguard::register`.
#[derive(Debug)]
pub struct RustA(pub Payload);
/// Another Rust type, so that borrows can ask for the wrong one.
#[derive(Debug)]
pub struct RustB(pub Payload);
/// The type exported to C with `export_thread_affine!`.
#[derive(Debug)]
pub struct Exported(pub Payload);

threadguard::export_thread_affine! {
    type Exported;
    /// Registers an `Exported` for object `obj`.
    new fn tgmodel_exported_new(obj: u64) { Exported(Payload { obj }) }
    /// Runs the body with index `body` of the current step as a borrow callback; returns the object number.
    fn tgmodel_exported_poke(this, body: u64) -> u64 {
        enter_callback(this.0.obj, body as usize);
        this.0.obj
    }
    /// Destroys it now.
    destroy fn tgmodel_exported_free;
    /// Asks its owner to destroy it.
    destroy_later fn tgmodel_exported_free_later;
}

/// The C destructor of C objects; the object pointer is the object number.
unsafe extern "C-unwind" fn c_destroy(object: *mut c_void) {
    dropped(object as ObjId, false);
}

/// The C borrow callback; the context is the index of the body to run.
unsafe extern "C-unwind" fn c_callback(object: *mut c_void, context: *mut c_void) {
    enter_callback(object as ObjId, context as usize);
}

fn enter_callback(obj: ObjId, body: usize) {
    record(Event::Callback { obj });
    let body = lock(&BODIES)[body].clone();
    for op in &body.ops {
        exec(op, Site::Op);
    }
    if body.panic {
        std::panic::panic_any(INTENTIONAL_PANIC);
    }
}

fn store_body(body: &Body) -> usize {
    let mut bodies = lock(&BODIES);
    bodies.push(body.clone());
    bodies.len() - 1
}

fn last_error() -> String {
    let mut buf = [0u8; 512];
    // SAFETY: `buf` is valid for writing `buf.len()` bytes.
    let len = unsafe { ffi::tg_last_error(buf.as_mut_ptr().cast::<c_char>(), buf.len()) };
    String::from_utf8_lossy(&buf[..len.min(buf.len() - 1)]).into_owned()
}

/// A C status, with the last-error text if it failed.
fn c_status(code: i32) -> (i32, String) {
    if code == TG_OK { (code, String::new()) } else { (code, last_error()) }
}

fn rust_status<T>(result: &Result<T, Error>) -> (i32, String) {
    match result {
        Ok(_) => (TG_OK, String::new()),
        Err(error) => (error.status().code(), error.message().to_owned()),
    }
}

/// Out pointer for a C call: NULL on request.
fn out_ptr<T>(slot: &mut T, null: bool) -> *mut T {
    if null { std::ptr::null_mut() } else { slot }
}

/// Executes one op on the calling thread and records its status (and whatever it caused).
pub fn exec(op: &Op, site: Site) {
    let mut value = 0u64;
    let (code, message) = match op {
        Op::Register { kind, obj, null_out, on_drop } => {
            let obj = *obj;
            if let Some(map) = lock(&ON_DROP).as_mut() {
                map.insert(obj, on_drop.clone());
            }
            let mut out = Handle::NULL;
            let (code, message) = match kind {
                ObjectKind::C { tag } => {
                    let out = out_ptr(&mut out, *null_out);
                    // SAFETY: `out` is NULL or points to a live local.
                    c_status(unsafe { ffi::tg_register(*tag, obj as *mut c_void, Some(c_destroy), out) })
                }
                ObjectKind::Rust(RustType::A) => {
                    let result = threadguard::register(RustA(Payload { obj }));
                    out = result.as_ref().copied().unwrap_or(Handle::NULL);
                    rust_status(&result)
                }
                ObjectKind::Rust(RustType::B) => {
                    let result = threadguard::register(RustB(Payload { obj }));
                    out = result.as_ref().copied().unwrap_or(Handle::NULL);
                    rust_status(&result)
                }
                ObjectKind::Export => {
                    let out = out_ptr(&mut out, *null_out);
                    // SAFETY: `out` is NULL or points to a live local.
                    c_status(unsafe { tgmodel_exported_new(obj, out) })
                }
            };
            if code == TG_OK {
                registered(obj, out);
            }
            (code, message)
        }
        Op::With { api, handle, tag, rust, null_fn, body } => {
            let handle = resolve(*handle);
            let index = store_body(body);
            match api {
                Api::C => {
                    let callback: ffi::tg_borrow_fn = if *null_fn { None } else { Some(c_callback) };
                    // SAFETY: `c_callback` is sound with any object and context: it treats both as numbers.
                    c_status(unsafe { ffi::tg_with(handle, *tag, callback, index as *mut c_void) })
                }
                Api::Rust => {
                    let outcome = catch_unwind(AssertUnwindSafe(|| match rust {
                        RustType::A => threadguard::with(handle, |v: &mut RustA| enter_callback(v.0.obj, index)),
                        RustType::B => threadguard::with(handle, |v: &mut RustB| enter_callback(v.0.obj, index)),
                    }));
                    match outcome {
                        Ok(result) => rust_status(&result),
                        Err(_) => (RUST_PANIC, String::new()),
                    }
                }
                Api::Export => {
                    let out = out_ptr(&mut value, *null_fn);
                    // SAFETY: `out` is NULL or points to a live local.
                    c_status(unsafe { tgmodel_exported_poke(handle, index as u64, out) })
                }
            }
        }
        Op::Destroy { how, handle } => {
            let handle = resolve(*handle);
            match how {
                DestroyHow::C => c_status(ffi::tg_destroy(handle)),
                DestroyHow::Rust => rust_status(&threadguard::destroy(handle)),
                DestroyHow::RustAs(RustType::A) => rust_status(&threadguard::destroy_as::<RustA>(handle)),
                DestroyHow::RustAs(RustType::B) => rust_status(&threadguard::destroy_as::<RustB>(handle)),
                DestroyHow::Export => c_status(tgmodel_exported_free(handle)),
            }
        }
        Op::DestroyLater { api, handle } => {
            let handle = resolve(*handle);
            match api {
                Api::C => c_status(ffi::tg_destroy_later(handle)),
                Api::Rust => rust_status(&threadguard::destroy_later(handle)),
                Api::Export => c_status(tgmodel_exported_free_later(handle)),
            }
        }
        Op::RunPending { api } => match api {
            Api::Rust => rust_status(&threadguard::run_pending()),
            _ => c_status(ffi::tg_run_pending()),
        },
        Op::Cleanup { api } => match api {
            Api::Rust => rust_status(&threadguard::thread_cleanup()),
            _ => c_status(ffi::tg_thread_cleanup()),
        },
        Op::OwnerOf { api, handle, null_out } => {
            let handle = resolve(*handle);
            match api {
                Api::Rust => {
                    let result = threadguard::owner_of(handle);
                    value = result.as_ref().copied().unwrap_or(0);
                    rust_status(&result)
                }
                _ => {
                    let out = out_ptr(&mut value, *null_out);
                    // SAFETY: `out` is NULL or points to a live local.
                    c_status(unsafe { ffi::tg_owner_of(handle, out) })
                }
            }
        }
        Op::Detach { api, handle, tag, rust, null_out } => {
            let handle = resolve(*handle);
            let mut out = Token::NULL;
            let (code, message) = match api {
                Api::Rust => {
                    let result = match rust {
                        RustType::A => threadguard::detach::<RustA>(handle),
                        RustType::B => threadguard::detach::<RustB>(handle),
                    };
                    out = result.as_ref().copied().unwrap_or(Token::NULL);
                    rust_status(&result)
                }
                _ => {
                    let out = out_ptr(&mut out, *null_out);
                    // SAFETY: `out` is NULL or points to a live local.
                    c_status(unsafe { ffi::tg_detach(handle, *tag, out) })
                }
            };
            if code == TG_OK {
                lock(&TOKENS).push(out);
                record(Event::Detached { token: out });
            }
            (code, message)
        }
        Op::Adopt { api, token: which, rust, null_out } => {
            let token = token(*which);
            let mut out = Handle::NULL;
            let (code, message) = match api {
                Api::Rust => {
                    let result = match rust {
                        RustType::A => threadguard::adopt::<RustA>(token),
                        RustType::B => threadguard::adopt::<RustB>(token),
                    };
                    out = result.as_ref().copied().unwrap_or(Handle::NULL);
                    rust_status(&result)
                }
                _ => {
                    let out = out_ptr(&mut out, *null_out);
                    // SAFETY: `out` is NULL or points to a live local.
                    c_status(unsafe { ffi::tg_adopt(token, out) })
                }
            };
            if code == TG_OK {
                adopted(out);
            }
            (code, message)
        }
        Op::TokenDestroy { api, token: which } => {
            let token = token(*which);
            match api {
                Api::Rust => rust_status(&threadguard::destroy_token(token)),
                _ => c_status(ffi::tg_token_destroy(token)),
            }
        }
    };
    record(Event::Status { site, code, message, value });
}

/// The calling worker's threadguard ID (its first call into the library), which it remembers
/// for the destructors that run on it.
pub fn learn_id() -> u64 {
    let id = ffi::tg_current_thread_id();
    WORKER_ID.with(|cell| cell.set(id));
    id
}

/// One worker thread: a slot of the program's [`Crew`], which runs the steps of its slot (the
/// workers hand the turn to each other directly, on one CPU).
pub struct Worker {
    /// Its threadguard thread ID.
    pub id: u64,
    slot: usize,
}

impl Worker {
    /// Starts a worker in `slot` of `crew` and learns its threadguard ID.
    pub fn start(crew: &mut Crew, slot: usize) -> Worker {
        let mut worker = Worker::spawn(crew, slot);
        worker.id = crew.run(slot, learn_id);
        worker
    }

    /// Starts a worker in `slot` of `crew` whose ID is not known yet (0): its first step
    /// learns it, with [`learn_id`].
    pub fn spawn(crew: &mut Crew, slot: usize) -> Worker {
        crew.start(slot, &format!("model-worker-{slot}"));
        Worker { id: 0, slot }
    }

    /// Ends the thread and waits until it is gone (its thread-local destructors have run).
    pub fn exit(self, crew: &mut Crew) {
        crew.end(self.slot).expect("the worker panicked");
    }

    /// Ends the thread and waits for it, whatever state it is in (after a failure).
    pub fn end_quietly(self, crew: &mut Crew) {
        let _ = crew.end(self.slot);
    }
}
