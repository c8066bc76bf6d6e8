//! Programs: any byte string, read as a list of steps.
//!
//! Bytes are read one at a time (0 once the input is used up) and every value means something,
//! so every input is a program and small inputs reach every kind of misuse. A step names a
//! worker slot and an action; the handle an operation gets is described, not fixed ("a live
//! object of this thread", "another thread's", "one whose owner exited", "a destroyed one",
//! "this one with a bit flipped", "a forged one"), and resolved against the model when the step
//! runs, so the whole program is decoded before it starts.
//!
//! Re-entrant steps (action bytes 236-247) came after the first programs and exist only for
//! specs with a [`Spec::borrow`](crate::Spec::borrow): with one, a program saved before them reads the
//! same up to its first action byte in 236-247 (then any operation, now a re-entrant one) and
//! differently from there; without one, every program reads as before.

use crate::spec::{OpFn, Spec};

/// Top-level steps per program at most (the rest of the input is ignored).
pub const MAX_STEPS: usize = 64;

/// Which objects a handle is picked from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Who {
    Me,
    Other,
    Any,
    ExitedOwner,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Life {
    Live,
    Dead,
    Any,
}

/// The kind of the picked object, relative to the operation's kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KindSel {
    Same,
    Other,
    Any,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ForgedOwner {
    Me,
    Slot(u8),
    Exited,
    Zero,
    NeverIssued(u64),
}

/// The handle an operation is given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    Pick { who: Who, life: Life, kind: KindSel, index: u8 },
    Null,
    Forged { owner: ForgedOwner, key: u64 },
    FlipKey { index: u8, bit: u8 },
    FlipOwner { index: u8, bit: u8 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// One of the spec's operations.
    Op { op: usize, target: Target, arg: u64 },
    /// The kit borrows the target (with the spec's borrow for the op's kind) and runs the op
    /// on the same handle inside the borrow.
    Reentrant { op: usize, target: Target, arg: u64 },
    /// The kit registers an object of its own type: a handle of the wrong type for every op.
    Decoy,
    /// `threadguard::run_pending` on the slot's thread.
    RunPending,
    /// `threadguard::thread_cleanup` on the slot's thread.
    Cleanup,
    /// The slot's thread exits; a new thread takes the slot.
    Exit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Step {
    pub slot: usize,
    pub action: Action,
}

struct Input<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let byte = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        byte
    }
}

/// Decodes `data` into at most [`MAX_STEPS`] steps over `slots` worker slots.
pub(crate) fn decode(spec: &Spec, slots: usize, data: &[u8]) -> Vec<Step> {
    let by_class = |class: fn(&OpFn) -> bool| -> Vec<usize> {
        spec.ops.iter().enumerate().filter(|(_, op)| class(&op.f)).map(|(index, _)| index).collect()
    };
    let creates = by_class(|f| matches!(f, OpFn::Create(_)));
    let calls = by_class(|f| matches!(f, OpFn::Call(_)));
    let destroys = by_class(|f| matches!(f, OpFn::Destroy(_)));
    let laters = by_class(|f| matches!(f, OpFn::DestroyLater(_)));
    let all: Vec<usize> = (0..spec.ops.len()).collect();
    // Re-entrant steps: the operations that take a handle, of kinds with a borrow.
    let reentrant: Vec<usize> = (0..spec.ops.len())
        .filter(|&op| !matches!(spec.ops[op].f, OpFn::Create(_)) && spec.kinds[spec.ops[op].kind.0].borrow.is_some())
        .collect();

    let mut input = Input { data, pos: 0 };
    let mut steps = Vec::new();
    while input.pos < data.len() && steps.len() < MAX_STEPS {
        let slot = usize::from(input.byte()) % slots;
        let class = match input.byte() {
            0..=79 => &calls,
            80..=129 => &creates,
            130..=164 => &destroys,
            165..=189 => &laters,
            190..=204 => {
                steps.push(Step { slot, action: Action::Decoy });
                continue;
            }
            205..=214 => {
                steps.push(Step { slot, action: Action::RunPending });
                continue;
            }
            215..=221 => {
                steps.push(Step { slot, action: Action::Cleanup });
                continue;
            }
            222..=235 => {
                steps.push(Step { slot, action: Action::Exit });
                continue;
            }
            236..=247 if !reentrant.is_empty() => {
                let op = reentrant[usize::from(input.byte()) % reentrant.len()];
                // The kit borrows the target first: one of the thread's live objects of the
                // operation's kind when there is one (the model predicts the borrow's
                // refusal otherwise).
                let target = Target::Pick { who: Who::Me, life: Life::Live, kind: KindSel::Same, index: input.byte() };
                let arg = u64::from(input.byte());
                steps.push(Step { slot, action: Action::Reentrant { op, target, arg } });
                continue;
            }
            _ => &all,
        };
        let class = if class.is_empty() { &all } else { class };
        if class.is_empty() {
            continue;
        }
        let op = class[usize::from(input.byte()) % class.len()];
        let target = if matches!(spec.ops[op].f, OpFn::Create(_)) { Target::Null } else { target(&mut input, slots) };
        let arg = u64::from(input.byte());
        steps.push(Step { slot, action: Action::Op { op, target, arg } });
    }
    steps
}

fn target(input: &mut Input<'_>, slots: usize) -> Target {
    let pick = |who, life, kind, input: &mut Input<'_>| Target::Pick { who, life, kind, index: input.byte() };
    match input.byte() % 16 {
        0..=5 => pick(Who::Me, Life::Live, KindSel::Same, input),
        6 => pick(Who::Any, Life::Live, KindSel::Same, input),
        7 => pick(Who::Other, Life::Live, KindSel::Same, input),
        8 => pick(Who::Me, Life::Live, KindSel::Other, input),
        9 => pick(Who::Any, Life::Dead, KindSel::Any, input),
        10 => pick(Who::ExitedOwner, Life::Any, KindSel::Any, input),
        11 => Target::Null,
        12 => {
            let owner = match input.byte() % 5 {
                0 => ForgedOwner::Me,
                1 => ForgedOwner::Slot((usize::from(input.byte()) % slots) as u8),
                2 => ForgedOwner::Exited,
                3 => ForgedOwner::Zero,
                _ => ForgedOwner::NeverIssued((1 << 62) | u64::from(input.byte()) << 8),
            };
            let key = u64::from(input.byte()).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            Target::Forged { owner, key }
        }
        13 => Target::FlipKey { index: input.byte(), bit: input.byte() % 64 },
        // High bits only: a low bit would name whatever thread has that ID in this process,
        // which differs from run to run (ForgedOwner names this program's threads).
        14 => Target::FlipOwner { index: input.byte(), bit: 40 + input.byte() % 24 },
        _ => pick(Who::Any, Life::Any, KindSel::Any, input),
    }
}

/// A random program from `seed` (xorshift64*), 8 to 300 bytes long.
pub fn random_program(seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0xd1b5_4a32_d192_ed03;
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let len = 8 + (next() % 293) as usize;
    (0..len).map(|_| (next() >> 56) as u8).collect()
}
