//! Turning input bytes into steps.
//!
//! Any byte string is a valid program: bytes are read one at a time (0 once the input is
//! used up) and every value maps to something. Handle choices are made against the model's
//! current state, so a byte can mean "a live object of this thread", "an object of another
//! thread", "one whose owner exited", "a destroyed one", "this one with bit 70 flipped" or
//! "a forged one": small inputs reach every kind of misuse.

use super::ops::{Api, Body, DestroyHow, HandleRef, ObjectKind, OnDrop, Op, RustType, Step, TokenRef};
use super::oracle::Model;
use threadguard::Handle;

/// Nested ops (callback bodies, destructor actions) go at most this deep.
const MAX_DEPTH: u32 = 3;

/// The input, read a byte at a time.
pub struct Input {
    data: Vec<u8>,
    pos: usize,
}

impl Input {
    pub fn new(data: &[u8]) -> Input {
        Input { data: data.to_vec(), pos: 0 }
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }

    fn byte(&mut self) -> u8 {
        let byte = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        byte
    }

    fn u64(&mut self) -> u64 {
        (0..8).fold(0, |value, _| (value << 8) | u64::from(self.byte()))
    }
}

/// Decodes one step for a program whose slots are run by the worker threads `slots`.
pub fn step(input: &mut Input, model: &mut Model, slots: &[u64]) -> Step {
    let slot = usize::from(input.byte()) % slots.len();
    let kind = input.byte();
    if (215..225).contains(&kind) {
        return Step::Exit { slot };
    }
    let mut decoder = Decoder { input, model, slots, thread: slots[slot] };
    Step::Op { slot, op: decoder.op(kind, 0, None, false) }
}

struct Decoder<'i, 'm> {
    input: &'i mut Input,
    model: &'m mut Model,
    slots: &'m [u64],
    /// The thread that will run the step.
    thread: u64,
}

impl Decoder<'_, '_> {
    fn byte(&mut self) -> u8 {
        self.input.byte()
    }

    fn api(&mut self) -> Api {
        [Api::C, Api::Rust, Api::Export][usize::from(self.byte()) % 3]
    }

    fn rust_type(&mut self) -> RustType {
        if self.byte().is_multiple_of(2) { RustType::A } else { RustType::B }
    }

    /// A C type tag: mostly 1..=3, sometimes the reserved 0.
    fn tag(&mut self) -> u32 {
        let byte = self.byte();
        if byte.is_multiple_of(8) { 0 } else { 1 + u32::from(byte % 3) }
    }

    /// `in_drop`: the op runs (maybe indirectly) from a destructor, where registrations may be
    /// refused; refused Rust values are dropped inside `register`, so they must not panic.
    fn op(&mut self, kind: u8, depth: u32, parent: Option<HandleRef>, in_drop: bool) -> Op {
        match kind {
            0..=39 | 225..=255 => {
                let kind = match self.byte() % 5 {
                    0 | 1 => ObjectKind::C { tag: self.tag() },
                    2 => ObjectKind::Rust(RustType::A),
                    3 => ObjectKind::Rust(RustType::B),
                    _ => ObjectKind::Export,
                };
                let obj = self.model.alloc_obj();
                let null_out = !matches!(kind, ObjectKind::Rust(_)) && self.byte().is_multiple_of(16);
                let on_drop = self.on_drop(kind, depth, in_drop);
                Op::Register { kind, obj, null_out, on_drop }
            }
            40..=99 => {
                let handle = self.handle(parent);
                let (mut api, mut tag, mut rust) = (self.api(), self.tag(), self.rust_type());
                if !self.byte().is_multiple_of(4) {
                    // Mostly ask for what the handle names, so that borrows get through.
                    match self.kind_of(handle) {
                        Some(ObjectKind::C { tag: actual }) => (api, tag) = (Api::C, actual),
                        Some(ObjectKind::Rust(actual)) => (api, rust) = (Api::Rust, actual),
                        Some(ObjectKind::Export) => api = Api::Export,
                        None => {}
                    }
                }
                let null_fn = api != Api::Rust && self.byte().is_multiple_of(16);
                let count = if depth < MAX_DEPTH { self.byte() % 4 } else { 0 };
                let ops = (0..count)
                    .map(|_| {
                        let kind = self.byte();
                        self.op(kind, depth + 1, Some(handle), in_drop)
                    })
                    .collect();
                let panic = api != Api::C && self.byte().is_multiple_of(6);
                Op::With { api, handle, tag, rust, null_fn, body: Body { ops, panic } }
            }
            100..=139 => {
                let handle = self.handle(parent);
                let mut how = match self.byte() % 5 {
                    0 => DestroyHow::C,
                    1 => DestroyHow::Rust,
                    2 => DestroyHow::RustAs(RustType::A),
                    3 => DestroyHow::RustAs(RustType::B),
                    _ => DestroyHow::Export,
                };
                if !self.byte().is_multiple_of(4) {
                    match self.kind_of(handle) {
                        Some(ObjectKind::Rust(actual)) => how = DestroyHow::RustAs(actual),
                        Some(ObjectKind::Export) => how = DestroyHow::Export,
                        Some(ObjectKind::C { .. }) => how = DestroyHow::C,
                        None => {}
                    }
                }
                Op::Destroy { how, handle }
            }
            140..=174 => Op::DestroyLater { api: self.api(), handle: self.handle(parent) },
            190..=199 => Op::Cleanup { api: self.api() },
            200..=214 => {
                let api = self.api();
                let handle = self.handle(parent);
                Op::OwnerOf { api, handle, null_out: api != Api::Rust && self.byte().is_multiple_of(8) }
            }
            180..=183 => {
                // Mostly an object this thread owns, so that detaches get through.
                let handle = match self.byte() % 4 {
                    0 => self.handle(parent),
                    _ => {
                        let me = self.thread;
                        HandleRef::Fixed(self.pick(|owner, live| live && owner == me))
                    }
                };
                let (mut api, mut tag, mut rust) = (self.api(), self.tag(), self.rust_type());
                if !self.byte().is_multiple_of(4) {
                    match self.kind_of(handle) {
                        Some(ObjectKind::C { tag: actual }) => (api, tag) = (Api::C, actual),
                        Some(ObjectKind::Rust(actual)) => (api, rust) = (Api::Rust, actual),
                        _ => {}
                    }
                }
                let null_out = api != Api::Rust && self.byte().is_multiple_of(16);
                Op::Detach { api, handle, tag, rust, null_out }
            }
            184..=186 => {
                let (api, token, rust) = (self.api(), self.token(), self.rust_type());
                let null_out = api != Api::Rust && self.byte().is_multiple_of(16);
                Op::Adopt { api, token, rust, null_out }
            }
            187..=189 => Op::TokenDestroy { api: self.api(), token: self.token() },
            // 175..=179, and 215..=224 below the top level (where it means a thread exit).
            _ => Op::RunPending { api: self.api() },
        }
    }

    /// A token: mostly one issued (the latest ones most often), sometimes forged or null.
    fn token(&mut self) -> TokenRef {
        let choice = self.byte();
        let index = usize::from(self.byte());
        match choice % 8 {
            0 => TokenRef::Null,
            1 => TokenRef::Forged(index),
            // Counted from the end at run time: `usize::MAX - n` is the n-th latest.
            2..=4 => TokenRef::Issued(usize::MAX - index % 4),
            _ => TokenRef::Issued(index),
        }
    }

    fn on_drop(&mut self, kind: ObjectKind, depth: u32, in_drop: bool) -> OnDrop {
        match self.byte() {
            0..=139 => OnDrop::Nothing,
            140..=159 if kind.is_native() && !in_drop => OnDrop::Panic,
            140..=159 => OnDrop::Nothing,
            action if depth < MAX_DEPTH => {
                let count = 1 + usize::from(action % 2);
                let ops = (0..count)
                    .map(|_| {
                        let kind = self.byte();
                        self.op(kind, depth + 1, None, true)
                    })
                    .collect();
                OnDrop::Run(ops)
            }
            _ => OnDrop::Nothing,
        }
    }

    /// What `handle` names, if the model knows it.
    fn kind_of(&self, handle: HandleRef) -> Option<ObjectKind> {
        let HandleRef::Fixed(handle) = handle else { return None };
        self.model.known_objects().find(|(_, object)| object.handle == Some(handle)).map(|(_, object)| object.kind)
    }

    /// One of the known handles that `keep` accepts (falling back to any known handle).
    fn pick(&mut self, keep: impl Fn(u64, bool) -> bool) -> Handle {
        let index = usize::from(self.byte());
        let all: Vec<(Handle, u64, bool)> = self
            .model
            .known_objects()
            .map(|(_, object)| (object.handle.expect("known"), object.owner, object.live))
            .collect();
        let chosen: Vec<Handle> =
            all.iter().filter(|(_, owner, live)| keep(*owner, *live)).map(|(handle, _, _)| *handle).collect();
        let from = if chosen.is_empty() { all.iter().map(|(handle, _, _)| *handle).collect() } else { chosen };
        if from.is_empty() { Handle::NULL } else { from[index % from.len()] }
    }

    fn handle(&mut self, parent: Option<HandleRef>) -> HandleRef {
        let me = self.thread;
        let choice = self.byte();
        let handle = match choice % 16 {
            0..=4 => self.pick(|_, live| live),
            5 => self.pick(|_, _| true),
            6 => Handle::NULL,
            7 => self.model.known_objects().last().and_then(|(_, object)| object.handle).unwrap_or(Handle::NULL),
            8 => {
                let base = self.pick(|_, live| live);
                let bit = self.byte() % 128;
                match bit {
                    0..=63 => Handle { owner: base.owner ^ (1 << bit), ..base },
                    _ => Handle { key: base.key ^ (1 << (bit - 64)), ..base },
                }
            }
            9 => {
                let owner = match self.byte() % 5 {
                    0 => me,
                    1 => self.slots[usize::from(self.byte()) % self.slots.len()],
                    2 => self.model.threads.iter().rev().find(|(_, t)| !t.alive).map_or(1, |(&id, _)| id),
                    3 => 0,
                    _ => (1 << 62) | self.input.u64(),
                };
                Handle { owner, key: self.input.u64() }
            }
            10 | 11 => match parent {
                Some(parent) => return parent,
                None => self.pick(|_, live| live),
            },
            12 => return HandleRef::StepNew(usize::from(self.byte() % 4)),
            13 => self.pick(|owner, live| live && owner == me),
            14 => self.pick(|owner, live| live && owner != me),
            _ => {
                let exited: Vec<u64> = self.model.threads.iter().filter(|(_, t)| !t.alive).map(|(&id, _)| id).collect();
                self.pick(|owner, _| exited.contains(&owner))
            }
        };
        HandleRef::Fixed(handle)
    }
}

/// A random program from `seed` (xorshift64*), 16 to 400 bytes long.
pub fn random_program(seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0xd1b5_4a32_d192_ed03;
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let len = 16 + (next() % 385) as usize;
    (0..len).map(|_| (next() >> 56) as u8).collect()
}
