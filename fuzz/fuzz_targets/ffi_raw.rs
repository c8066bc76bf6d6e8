//! The header-facing C entry points fed raw bytes: handles made of arbitrary bits (or real ones
//! with arbitrary bits flipped), NULL out pointers and callbacks, arbitrary type tags, status
//! codes, policies and thread names. Nothing may crash or unwind, every status must be one the
//! header documents for that function (and have a name), callbacks run only on success and with
//! the object the handle names, and every registered object is destroyed exactly once.

#![no_main]

use std::collections::HashMap;
use std::ffi::{CStr, c_char, c_void};
use std::sync::Mutex;
use threadguard::Handle;
use threadguard::ffi::*;

/// Destructor runs by object pointer value, and callback runs, for the current input.
static DESTROYED: Mutex<Vec<usize>> = Mutex::new(Vec::new());
static CALLED: Mutex<Vec<usize>> = Mutex::new(Vec::new());

unsafe extern "C-unwind" fn count_destroy(object: *mut c_void) {
    DESTROYED.lock().unwrap().push(object as usize);
}

/// Records the call, then re-enters: the same object is busy, and cleanup is refused inside a borrow.
unsafe extern "C-unwind" fn reenter(object: *mut c_void, context: *mut c_void) {
    CALLED.lock().unwrap().push(object as usize);
    if !context.is_null() {
        // SAFETY: a non-null context is always the `Handle` of the borrowed object, alive for the call.
        let (handle, tag) = unsafe { *context.cast::<(Handle, u32)>() };
        // SAFETY: `reenter` is sound for any object and a NULL context.
        assert_eq!(unsafe { tg_with(handle, tag, Some(reenter), std::ptr::null_mut()) }, TG_ERR_BUSY);
        assert_eq!(tg_destroy(handle), TG_ERR_BUSY);
        assert_eq!(tg_thread_cleanup(), TG_ERR_BUSY);
    }
}

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let n = N.min(self.0.len());
        out[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        out
    }
    fn u8(&mut self) -> u8 {
        self.bytes::<1>()[0]
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.bytes())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.bytes())
    }
}

/// What the fuzzer has registered in this input: handle -> (tag, object pointer value, or 0
/// without a destructor). Entries stay after destruction (their handles go stale).
#[derive(Default)]
struct Pool {
    objects: HashMap<Handle, (u32, usize)>,
    order: Vec<Handle>,
    next_object: usize,
}

impl Pool {
    fn handle(&self, input: &mut Input<'_>) -> Handle {
        let choice = input.u8();
        let raw = Handle { owner: input.u64(), key: input.u64() };
        match (choice % 4, self.order.is_empty()) {
            (0, _) | (_, true) => raw,
            (1, false) => self.order[usize::from(choice) % self.order.len()],
            // A real handle with the raw bytes' bits flipped (often none: the bytes run out).
            (_, false) => {
                let base = self.order[usize::from(choice) % self.order.len()];
                Handle { owner: base.owner ^ (raw.owner & 0xff), key: base.key ^ raw.key }
            }
        }
    }
}

fn assert_documented(function: &str, status: tg_status, allowed: &[tg_status]) {
    assert!(allowed.contains(&status), "{function} returned {status}, not one of {allowed:?}");
    // SAFETY: tg_status_name returns a static NUL-terminated string.
    let name = unsafe { CStr::from_ptr(tg_status_name(status)) }.to_str().unwrap();
    assert_ne!(name, "TG_ERR_UNKNOWN", "{function} returned an unnamed status {status}");
    if status != TG_OK {
        // SAFETY: a zero length with a NULL buffer only asks for the length.
        assert!(unsafe { tg_last_error(std::ptr::null_mut(), 0) } > 0, "{function}: {name} without a message");
    }
}

const HANDLE_CHECKS: [tg_status; 4] = [TG_ERR_NULL_HANDLE, TG_ERR_WRONG_THREAD, TG_ERR_OWNER_EXITED, TG_ERR_STALE];

fn run(data: &[u8]) {
    let mut input = Input(data);
    let mut pool = Pool { next_object: 1, ..Pool::default() };
    let mut registered = 0usize;
    let me = tg_current_thread_id();
    assert_ne!(me, 0);
    DESTROYED.lock().unwrap().clear();
    CALLED.lock().unwrap().clear();
    while !input.0.is_empty() {
        match input.u8() % 14 {
            0 | 1 => {
                let tag = if input.u8() % 4 == 0 { input.u32() } else { u32::from(input.u8() % 4) };
                let flags = input.u8();
                let object = pool.next_object;
                let mut out = Handle::NULL;
                let out_ptr: *mut Handle = if flags & 1 == 0 { &mut out } else { std::ptr::null_mut() };
                let destroy: tg_destructor = if flags & 2 == 0 { Some(count_destroy) } else { None };
                // SAFETY: `out_ptr` is NULL or points to a live local.
                let status = unsafe { tg_register(tag, object as *mut c_void, destroy, out_ptr) };
                assert_documented("tg_register", status, &[TG_OK, TG_ERR_NULL_POINTER, TG_ERR_INVALID_ARGUMENT]);
                assert_eq!(status == TG_ERR_INVALID_ARGUMENT, tag == 0 && !out_ptr.is_null());
                if status == TG_OK {
                    assert_eq!(out.owner, me);
                    assert!(pool.objects.insert(out, (tag, if destroy.is_some() { object } else { 0 })).is_none());
                    pool.order.push(out);
                    pool.next_object += 1;
                    registered += usize::from(destroy.is_some());
                }
            }
            2 | 3 => {
                let handle = pool.handle(&mut input);
                let tag = match input.u8() % 3 {
                    0 => input.u32(),
                    _ => pool.objects.get(&handle).map_or(1, |&(tag, _)| tag),
                };
                let flags = input.u8();
                let callback: tg_borrow_fn = if flags & 1 == 0 { Some(reenter) } else { None };
                let mut context = (handle, tag);
                let context_ptr: *mut c_void =
                    if flags & 2 == 0 { (&raw mut context).cast() } else { std::ptr::null_mut() };
                let before = CALLED.lock().unwrap().len();
                // SAFETY: `reenter` is sound with any object and a context that is NULL or the pair above.
                let status = unsafe { tg_with(handle, tag, callback, context_ptr) };
                let mut allowed = HANDLE_CHECKS.to_vec();
                allowed.extend([TG_OK, TG_ERR_WRONG_TYPE, TG_ERR_NULL_POINTER]);
                assert_documented("tg_with", status, &allowed);
                let calls = CALLED.lock().unwrap()[before..].to_vec();
                if status == TG_OK {
                    let &(expected_tag, _) = pool.objects.get(&handle).expect("only a registered handle resolves");
                    assert_eq!(expected_tag, tag);
                    assert_eq!(calls.len(), 1, "one callback per successful borrow");
                } else {
                    assert!(calls.is_empty(), "callback ran for a refused borrow ({status})");
                }
            }
            4 | 5 => {
                let handle = pool.handle(&mut input);
                let status = tg_destroy(handle);
                let mut allowed = HANDLE_CHECKS.to_vec();
                allowed.push(TG_OK);
                assert_documented("tg_destroy", status, &allowed);
                if status == TG_OK {
                    let &(_, object) = pool.objects.get(&handle).expect("only a registered handle resolves");
                    if object != 0 {
                        assert!(DESTROYED.lock().unwrap().contains(&object), "destroyed on the spot");
                    }
                }
            }
            6 => {
                let handle = pool.handle(&mut input);
                let status = tg_destroy_later(handle);
                let mut allowed = HANDLE_CHECKS.to_vec();
                allowed.push(TG_OK);
                assert_documented("tg_destroy_later", status, &allowed);
                if status == TG_OK {
                    assert!(pool.objects.contains_key(&handle), "only a handle of this thread is queued");
                }
            }
            7 => assert_documented("tg_run_pending", tg_run_pending(), &[TG_OK]),
            8 => {
                let handle = pool.handle(&mut input);
                let mut owner = 0u64;
                let out: *mut u64 = if input.u8() % 4 == 0 { std::ptr::null_mut() } else { &mut owner };
                // SAFETY: `out` is NULL or points to a live local.
                let status = unsafe { tg_owner_of(handle, out) };
                let mut allowed = HANDLE_CHECKS.to_vec();
                allowed.extend([TG_OK, TG_ERR_NULL_POINTER]);
                assert_documented("tg_owner_of", status, &allowed);
                if status == TG_OK {
                    assert_eq!(owner, handle.owner);
                }
            }
            9 => {
                let code = input.u32() as i32;
                // SAFETY: tg_status_name returns a static NUL-terminated string for any code.
                let name = unsafe { CStr::from_ptr(tg_status_name(code)) }.to_str().unwrap();
                assert_eq!(name == "TG_ERR_UNKNOWN", !(0..=12).contains(&code), "{code} -> {name}");
            }
            10 => {
                let mut buf = [0x55u8; 64];
                let len = usize::from(input.u8()) % (buf.len() + 1);
                let null = len == 0 && input.u8() % 2 == 0;
                let ptr: *mut c_char = if null { std::ptr::null_mut() } else { buf.as_mut_ptr().cast() };
                // SAFETY: `ptr` is valid for `len <= buf.len()` bytes, or NULL with `len` 0.
                let full = unsafe { tg_last_error(ptr, len) };
                if len > 0 {
                    let written = full.min(len - 1);
                    assert_eq!(buf[written], 0, "NUL-terminated at the end of what fits");
                    assert!(buf[..written].iter().all(|&b| b != 0));
                    assert!(buf[written + 1..].iter().all(|&b| b == 0x55), "wrote past the copy");
                }
            }
            11 => {
                let policy = input.u32() as i32;
                let status = tg_set_violation_policy(policy);
                assert_documented("tg_set_violation_policy", status, &[TG_OK, TG_ERR_INVALID_ARGUMENT]);
                assert_eq!(status == TG_OK, (0..=2).contains(&policy));
                // Never leave log (noise) or abort (the next violation would end the process) on.
                assert_eq!(tg_set_violation_policy(TG_POLICY_RETURN), TG_OK);
            }
            12 => {
                let mut name: Vec<u8> = input.bytes::<12>().iter().copied().filter(|&b| b != 0).collect();
                name.push(0);
                let ptr: *const c_char =
                    if name.len().is_multiple_of(3) { std::ptr::null() } else { name.as_ptr().cast() };
                // SAFETY: `ptr` is NULL or a NUL-terminated string.
                let status = unsafe { tg_set_thread_name(ptr) };
                assert_documented("tg_set_thread_name", status, &[TG_OK, TG_ERR_NULL_POINTER]);
                assert_eq!(status == TG_OK, !ptr.is_null());
            }
            _ => {
                let mut stats = std::mem::MaybeUninit::<threadguard::Stats>::uninit();
                let out = if input.u8() % 4 == 0 { std::ptr::null_mut() } else { stats.as_mut_ptr() };
                // SAFETY: `out` is NULL or valid for writing one `tg_stats`.
                let status = unsafe { tg_get_stats(out) };
                assert_documented("tg_get_stats", status, &[TG_OK, TG_ERR_NULL_POINTER]);
                assert_eq!(status == TG_OK, !out.is_null());
                assert_eq!(tg_current_thread_id(), me, "the thread keeps its ID");
                // SAFETY: tg_version returns a static NUL-terminated string.
                assert!(!unsafe { CStr::from_ptr(tg_version()) }.to_bytes().is_empty());
                assert_eq!(tg_abi_version(), TG_ABI_VERSION);
            }
        }
    }
    // Everything left (and everything queued) is destroyed now, each object exactly once.
    assert_documented("tg_thread_cleanup", tg_thread_cleanup(), &[TG_OK]);
    let mut destroyed = DESTROYED.lock().unwrap().clone();
    assert_eq!(destroyed.len(), registered, "every object with a destructor destroyed exactly once");
    destroyed.sort_unstable();
    destroyed.dedup();
    assert_eq!(destroyed.len(), registered, "no object destroyed twice");
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| run(data));
