//! The misuse matrix: every C entry point against every kind of misuse, with the exact code
//! returned. The table in SECURITY.md is checked against what this test observes, so it cannot
//! drift; `TG_UPDATE_MATRIX=1 cargo test --test misuse_matrix` rewrites it.

use std::ffi::{CStr, c_char, c_void};
use std::fmt::Write as _;
use std::ptr;
use threadguard::ffi::*;
use threadguard::{Handle, Token};

const TAG: u32 = 7;
const BEGIN: &str = "<!-- misuse-matrix:begin -->";
const END: &str = "<!-- misuse-matrix:end -->";

/// The kinds of misuse, in column order.
const MISUSES: [&str; 12] = [
    "null handle",
    "random handle",
    "forged key (bit flip)",
    "stale (destroyed)",
    "double destroy",
    "wrong type",
    "wrong thread",
    "owner exited",
    "NULL pointer argument",
    "re-entrant (inside its own borrow)",
    "panicking callback",
    "after thread shutdown",
];

/// An outcome: a status, or why the cell does not apply.
#[derive(Clone, Copy)]
enum Cell_ {
    Code(tg_status),
    NotApplicable,
    Text(&'static str),
}

fn name(status: tg_status) -> String {
    // SAFETY: tg_status_name returns a static NUL-terminated string.
    let full = unsafe { CStr::from_ptr(tg_status_name(status)) }.to_str().unwrap();
    full.trim_start_matches("TG_ERR_").trim_start_matches("TG_").to_owned()
}

unsafe extern "C-unwind" fn nothing(_object: *mut c_void, _context: *mut c_void) {}

/// Runs the `FnMut()` that `context` points to, inside a borrow.
unsafe extern "C-unwind" fn run_closure(_object: *mut c_void, context: *mut c_void) {
    // SAFETY: `context` is the `&mut &mut dyn FnMut()` made by `inside_borrow`, alive for the call.
    let f = unsafe { &mut *context.cast::<&mut dyn FnMut()>() };
    f();
}

fn register() -> Handle {
    let mut handle = Handle::NULL;
    // SAFETY: `handle` is valid for writes.
    assert_eq!(unsafe { tg_register(TAG, ptr::null_mut(), None, &mut handle) }, TG_OK);
    handle
}

fn inside_borrow(handle: Handle, mut f: &mut dyn FnMut()) {
    // SAFETY: run_closure matches the context passed.
    let status = unsafe { tg_with(handle, TAG, Some(run_closure), (&mut f as *mut &mut dyn FnMut()).cast()) };
    assert_eq!(status, TG_OK);
}

/// One entry point that takes a handle: how to call it with a handle, and with a NULL pointer.
struct HandleEntry {
    name: &'static str,
    /// Makes a live object of the kind the entry point expects.
    make: fn() -> Handle,
    call: fn(Handle) -> tg_status,
    null_pointer: Option<fn(Handle) -> tg_status>,
    /// A live object of another type, for the wrong-type column.
    other_type: Option<fn() -> Handle>,
    /// Calls the entry point so that its body panics.
    panicking: Option<fn(Handle) -> tg_status>,
    /// Runs a closure inside a borrow of an object of the kind `make` makes.
    inside: fn(Handle, Box<dyn FnMut()>),
}

/// A Rust type exported with the macro, to show what generated entry points answer.
pub struct Gadget(u32);

threadguard::export_thread_affine! {
    type Gadget;
    /// Makes a gadget.
    new fn gadget_new() { Gadget(0) }
    /// Pokes the gadget; panics when asked to.
    fn gadget_poke(this, panic: bool) -> u32 {
        if panic {
            panic!("gadget refused to be poked");
        }
        this.0 += 1;
        this.0
    }
    /// Runs the closure `inside_gadget` left for it, inside this gadget's borrow.
    fn gadget_visit(this) {
        let _ = this;
        let visit = VISIT.with(|visit| visit.borrow_mut().take());
        if let Some(mut visit) = visit {
            visit();
        }
    }
    /// Destroys the gadget.
    destroy fn gadget_free;
}

thread_local! {
    static VISIT: std::cell::RefCell<Option<Box<dyn FnMut()>>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f` inside a borrow of the gadget `handle` (through a generated method).
fn inside_gadget(handle: Handle, f: Box<dyn FnMut()>) {
    VISIT.with(|visit| *visit.borrow_mut() = Some(f));
    assert_eq!(gadget_visit(handle), TG_OK);
}

/// Runs `f` inside a borrow of the C object `handle`.
fn inside_c_object(handle: Handle, mut f: Box<dyn FnMut()>) {
    inside_borrow(handle, &mut *f);
}

fn make_gadget() -> Handle {
    let mut handle = Handle::NULL;
    // SAFETY: `handle` is valid for writes.
    assert_eq!(unsafe { gadget_new(&mut handle) }, TG_OK);
    handle
}

fn poke(handle: Handle, panic: bool) -> tg_status {
    let mut out = 0;
    // SAFETY: `out` is valid for writes.
    unsafe { gadget_poke(handle, panic, &mut out) }
}

fn with_ok(handle: Handle) -> tg_status {
    // SAFETY: `nothing` ignores its arguments.
    unsafe { tg_with(handle, TAG, Some(nothing), ptr::null_mut()) }
}

fn owner_of(handle: Handle) -> tg_status {
    let mut owner = 0;
    // SAFETY: `owner` is valid for writes.
    unsafe { tg_owner_of(handle, &mut owner) }
}

/// Detaches the object; a token it gets is destroyed at once (the matrix only wants the code).
fn detach(handle: Handle) -> tg_status {
    let mut token = Token::NULL;
    // SAFETY: `token` is valid for writes.
    let status = unsafe { tg_detach(handle, TAG, &mut token) };
    if status == TG_OK {
        assert_eq!(tg_token_destroy(token), TG_OK);
    }
    status
}

/// A fresh token for a detached object of the kind `register` makes.
fn token() -> Token {
    let mut token = Token::NULL;
    // SAFETY: `token` is valid for writes.
    assert_eq!(unsafe { tg_detach(register(), TAG, &mut token) }, TG_OK);
    token
}

fn adopt(token: Token) -> tg_status {
    let mut handle = Handle::NULL;
    // SAFETY: `handle` is valid for writes.
    let status = unsafe { tg_adopt(token, &mut handle) };
    if status == TG_OK {
        assert_eq!(tg_destroy(handle), TG_OK);
    }
    status
}

const INSIDE: fn(Handle, Box<dyn FnMut()>) = inside_c_object;

fn handle_entries() -> Vec<HandleEntry> {
    vec![
        HandleEntry {
            name: "tg_with",
            make: register,
            call: with_ok,
            // SAFETY: a NULL callback is a documented argument.
            null_pointer: Some(|h| unsafe { tg_with(h, TAG, None, ptr::null_mut()) }),
            other_type: Some(make_gadget),
            panicking: None,
            inside: INSIDE,
        },
        HandleEntry {
            name: "tg_destroy",
            make: register,
            call: |h| tg_destroy(h),
            null_pointer: None,
            other_type: None,
            panicking: None,
            inside: INSIDE,
        },
        HandleEntry {
            name: "tg_destroy_at",
            make: register,
            // SAFETY: the file name is a NUL-terminated string.
            call: |h| unsafe { tg_destroy_at(h, c"matrix.c".as_ptr(), 1) },
            null_pointer: None,
            other_type: None,
            panicking: None,
            inside: INSIDE,
        },
        HandleEntry {
            name: "tg_destroy_later",
            make: register,
            call: |h| tg_destroy_later(h),
            null_pointer: None,
            other_type: None,
            panicking: None,
            inside: INSIDE,
        },
        HandleEntry {
            name: "tg_owner_of",
            make: register,
            call: owner_of,
            // SAFETY: a NULL out pointer is a documented argument.
            null_pointer: Some(|h| unsafe { tg_owner_of(h, ptr::null_mut()) }),
            other_type: None,
            panicking: None,
            inside: INSIDE,
        },
        HandleEntry {
            name: "tg_detach",
            make: register,
            call: detach,
            // SAFETY: a NULL out pointer is a documented argument.
            null_pointer: Some(|h| unsafe { tg_detach(h, TAG, ptr::null_mut()) }),
            other_type: Some(make_gadget),
            panicking: None,
            inside: INSIDE,
        },
        HandleEntry {
            name: "export_thread_affine! method",
            make: make_gadget,
            call: |h| poke(h, false),
            // SAFETY: a NULL out pointer is a documented argument.
            null_pointer: Some(|h| unsafe { gadget_poke(h, false, ptr::null_mut()) }),
            other_type: Some(register),
            panicking: Some(|h| poke(h, true)),
            inside: inside_gadget,
        },
        HandleEntry {
            name: "export_thread_affine! destroy",
            make: make_gadget,
            call: |h| gadget_free(h),
            null_pointer: None,
            other_type: Some(register),
            panicking: None,
            inside: inside_gadget,
        },
    ]
}

thread_local! {
    /// Registered before threadguard's own state on a probe thread, so (thread-local destructors
    /// run in reverse order of registration) it runs after threadguard's exit hook.
    static AFTER_SHUTDOWN: Probe = const { Probe };
}

struct Probe;

static SHUTDOWN_CELLS: std::sync::Mutex<Option<[tg_status; 13]>> = std::sync::Mutex::new(None);

impl Drop for Probe {
    fn drop(&mut self) {
        let handle = Handle { owner: 1, key: 1 };
        let mut out = Handle::NULL;
        let mut stats = std::mem::MaybeUninit::<threadguard::Stats>::uninit();
        let mut token = Token::NULL;
        // SAFETY: every pointer is valid for writes; callbacks ignore their arguments.
        let results = unsafe {
            [
                tg_register(TAG, ptr::null_mut(), None, &mut out),
                tg_with(handle, TAG, Some(nothing), ptr::null_mut()),
                tg_destroy(handle),
                tg_destroy_later(handle),
                tg_run_pending(),
                tg_thread_cleanup(),
                owner_of(handle),
                tg_get_stats(stats.as_mut_ptr()),
                tg_detach(handle, TAG, &mut token),
                tg_adopt(Token { id: 1, check: 1 }, &mut out),
                tg_token_destroy(Token { id: 1, check: 1 }),
                tg_destroy_at(handle, c"matrix.c".as_ptr(), 1),
                tg_register_at(TAG, ptr::null_mut(), None, &mut out, c"matrix.c".as_ptr(), 1),
            ]
        };
        *SHUTDOWN_CELLS.lock().unwrap() = Some(results);
    }
}

fn after_shutdown() -> [tg_status; 13] {
    std::thread::spawn(|| {
        AFTER_SHUTDOWN.with(|_| ());
        tg_current_thread_id();
    })
    .join()
    .unwrap();
    SHUTDOWN_CELLS.lock().unwrap().expect("probe ran")
}

fn matrix() -> Vec<(&'static str, Vec<Cell_>)> {
    let shutdown = after_shutdown();
    let mut rows = Vec::new();
    for (index, entry) in handle_entries().into_iter().enumerate() {
        let call = entry.call;
        let mut cells =
            vec![Cell_::Code(call(Handle::NULL)), Cell_::Code(call(Handle { owner: 0x5eed_1234, key: 0x0bad_c0de }))];
        let make = entry.make;
        let live = make();
        cells.push(Cell_::Code(call(Handle { key: live.key ^ (1 << 17), ..live })));
        let dead = make();
        assert_eq!(tg_destroy(dead), TG_OK);
        cells.push(Cell_::Code(call(dead)));
        cells.push(if entry.name.contains("destroy") && !entry.name.contains("later") {
            let twice = make();
            assert_eq!(call(twice), TG_OK);
            Cell_::Code(call(twice))
        } else {
            Cell_::NotApplicable
        });
        cells.push(match entry.other_type {
            Some(other) => {
                let other = other();
                let status = call(other);
                let _ = tg_destroy(other);
                Cell_::Code(status)
            }
            None => Cell_::NotApplicable,
        });
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let owner = std::thread::spawn(move || {
            handle_tx.send(make()).unwrap();
            done_rx.recv().unwrap();
        });
        let theirs = handle_rx.recv().unwrap();
        cells.push(Cell_::Code(call(theirs)));
        done_tx.send(()).unwrap();
        owner.join().unwrap();
        let exited = std::thread::spawn(make).join().unwrap();
        cells.push(Cell_::Code(call(exited)));
        cells.push(match entry.null_pointer {
            Some(null_call) => Cell_::Code(null_call(live)),
            None => Cell_::NotApplicable,
        });
        let nested = std::rc::Rc::new(std::cell::Cell::new(TG_OK));
        let nested_inside = std::rc::Rc::clone(&nested);
        (entry.inside)(live, Box::new(move || nested_inside.set(call(live))));
        cells.push(Cell_::Code(nested.get()));
        cells.push(match (entry.panicking, entry.name) {
            (Some(panicking), _) => Cell_::Code(panicking(live)),
            (None, "tg_with") => Cell_::Text("C cannot unwind (aborts)"),
            (None, _) => Cell_::NotApplicable,
        });
        cells.push(match [1, 2, 11, 3, 6, 8].get(index) {
            Some(&column) => Cell_::Code(shutdown[column]),
            None => Cell_::NotApplicable,
        });
        let _ = tg_destroy(live);
        rows.push((entry.name, cells));
    }

    // Entry points without a handle.
    let na = Cell_::NotApplicable;
    let live = register();
    let mut out = Handle::NULL;
    let mut nested_register = TG_OK;
    inside_borrow(live, &mut || {
        // SAFETY: `out` is valid for writes.
        nested_register = unsafe { tg_register(TAG, ptr::null_mut(), None, &mut out) };
    });
    assert_eq!(tg_destroy(out), TG_OK);
    // SAFETY: a NULL out pointer is a documented argument.
    let register_null = unsafe { tg_register(TAG, ptr::null_mut(), None, ptr::null_mut()) };
    let mut row = vec![na; 12];
    row[8] = Cell_::Code(register_null);
    row[9] = Cell_::Code(nested_register);
    row[11] = Cell_::Code(shutdown[0]);
    rows.push(("tg_register", row));

    let mut nested_register_at = TG_OK;
    inside_borrow(live, &mut || {
        // SAFETY: `out` is valid for writes; the file name is NUL-terminated.
        nested_register_at = unsafe { tg_register_at(TAG, ptr::null_mut(), None, &mut out, c"m.c".as_ptr(), 1) };
    });
    assert_eq!(tg_destroy(out), TG_OK);
    let mut row = vec![na; 12];
    // SAFETY: a NULL out pointer and a NULL file name are documented arguments.
    row[8] = Cell_::Code(unsafe { tg_register_at(TAG, ptr::null_mut(), None, ptr::null_mut(), ptr::null(), 1) });
    row[9] = Cell_::Code(nested_register_at);
    row[11] = Cell_::Code(shutdown[12]);
    rows.push(("tg_register_at", row));

    let mut nested_pending = TG_OK;
    inside_borrow(live, &mut || nested_pending = tg_run_pending());
    let mut row = vec![na; 12];
    row[9] = Cell_::Code(nested_pending);
    row[11] = Cell_::Code(shutdown[4]);
    rows.push(("tg_run_pending", row));

    let mut nested_cleanup = TG_OK;
    inside_borrow(live, &mut || nested_cleanup = tg_thread_cleanup());
    let mut row = vec![na; 12];
    row[9] = Cell_::Code(nested_cleanup);
    row[11] = Cell_::Code(shutdown[5]);
    rows.push(("tg_thread_cleanup", row));

    let mut row = vec![na; 12];
    // SAFETY: a NULL out pointer is a documented argument.
    row[8] = Cell_::Code(unsafe { tg_get_stats(ptr::null_mut()) });
    row[11] = Cell_::Code(shutdown[7]);
    rows.push(("tg_get_stats", row));

    // Entry points that take a token: the columns read as for handles (a token whose object
    // was destroyed, a token destroyed twice, a token made on another thread, ...).
    type TokenCall = fn(Token) -> tg_status;
    let token_entries: [(&str, TokenCall, usize); 2] =
        [("tg_adopt", adopt, 9), ("tg_token_destroy", |t| tg_token_destroy(t), 10)];
    for (name, call, shutdown_column) in token_entries {
        let mut row = vec![na; 12];
        row[0] = Cell_::Code(call(Token::NULL));
        row[1] = Cell_::Code(call(Token { id: 0x5eed_1234, check: 0x0bad_c0de }));
        let live = token();
        row[2] = Cell_::Code(call(Token { check: live.check ^ (1 << 17), ..live }));
        let dead = token();
        assert_eq!(tg_token_destroy(dead), TG_OK);
        row[3] = Cell_::Code(call(dead));
        if name == "tg_token_destroy" {
            let twice = token();
            assert_eq!(call(twice), TG_OK);
            row[4] = Cell_::Code(call(twice));
        }
        let theirs = std::thread::spawn(token).join().unwrap();
        row[6] = Cell_::Code(call(theirs));
        let exited = std::thread::spawn(token).join().unwrap();
        row[7] = Cell_::Code(call(exited));
        if name == "tg_adopt" {
            // SAFETY: a NULL out pointer is a documented argument.
            row[8] = Cell_::Code(unsafe { tg_adopt(live, ptr::null_mut()) });
        }
        let mut nested = TG_OK;
        inside_borrow(register(), &mut || nested = call(live));
        row[9] = Cell_::Code(nested);
        row[11] = Cell_::Code(shutdown[shutdown_column]);
        rows.push((name, row));
    }

    let mut row = vec![na; 12];
    // SAFETY: a NULL name is a documented argument.
    row[8] = Cell_::Code(unsafe { tg_set_thread_name(ptr::null::<c_char>()) });
    rows.push(("tg_set_thread_name", row));

    let mut row = vec![na; 12];
    // SAFETY: a NULL out pointer is a documented argument.
    row[8] = Cell_::Code(unsafe { tg_copies_loaded(ptr::null_mut()) });
    rows.push(("tg_copies_loaded", row));
    assert_eq!(tg_destroy(live), TG_OK);
    rows
}

fn render(rows: &[(&'static str, Vec<Cell_>)]) -> String {
    let mut table = String::new();
    write!(table, "| entry point |").unwrap();
    for misuse in MISUSES {
        write!(table, " {misuse} |").unwrap();
    }
    table.push('\n');
    table.push_str(&format!("|---|{}\n", "---|".repeat(MISUSES.len())));
    for (entry, cells) in rows {
        write!(table, "| `{entry}` |").unwrap();
        for cell in cells {
            match cell {
                Cell_::Code(code) => write!(table, " {} |", name(*code)).unwrap(),
                Cell_::NotApplicable => table.push_str(" · |"),
                Cell_::Text(text) => write!(table, " {text} |").unwrap(),
            }
        }
        table.push('\n');
    }
    table
}

#[test]
fn security_md_misuse_matrix_matches_the_library() {
    let table = render(&matrix());
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/SECURITY.md");
    let document = std::fs::read_to_string(path).unwrap();
    let (start, end) = (document.find(BEGIN).expect("begin marker"), document.find(END).expect("end marker"));
    let current = document[start + BEGIN.len()..end].trim();
    if std::env::var_os("TG_UPDATE_MATRIX").is_some() {
        let updated = format!("{}{BEGIN}\n{}\n{}", &document[..start], table.trim(), &document[end..]);
        std::fs::write(path, updated).unwrap();
    } else {
        assert_eq!(
            current,
            table.trim(),
            "SECURITY.md's misuse matrix is out of date: TG_UPDATE_MATRIX=1 cargo test --test misuse_matrix"
        );
    }
}
