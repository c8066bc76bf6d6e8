package fuzzkit

// Programs: any byte string, read as a list of steps (as in the Rust kit,
// over this kit's executors, with re-entrant steps and without Cleanup).
// Bytes are read one at a time (0 once the input is used up) and every
// value means something. Handles are described ("a live object of this
// executor", "another's", "one whose owner exited", "a destroyed one", "a
// forged one") and resolved against the model when the step runs.
//
// A step is a slot byte and an action byte, and for an operation an op
// byte, the target's bytes and an arg byte. Action bytes: 0-79 a method,
// 80-129 a constructor, 130-164 a destructor, 165-189 a deferred
// destructor, 190-204 a decoy, 205-214 RunPending, 215-229 an exit, 230-242
// a re-entrant step (an operation that takes a handle, of a kind with a
// tag; its target is one index byte; without tags these bytes mean the next
// range), 243-255 any operation. Decoys and re-entrant steps came after the
// first programs: in those, action bytes 190-194 were deferred destructors,
// 195-204 RunPending and 230-242 any operation, so seeds saved before read
// differently from there on.

// MaxSteps is the most steps a program runs (the rest of the input is
// ignored).
const MaxSteps = 64

type who int

const (
	whoMe who = iota
	whoOther
	whoAny
	whoExited
)

type life int

const (
	lifeLive life = iota
	lifeDead
	lifeAny
)

type kindSel int

const (
	kindSame kindSel = iota
	kindOther
	kindAny
)

type targetKind int

const (
	targetPick targetKind = iota
	targetNull
	targetForged
	targetFlipKey
	targetFlipOwner
)

type target struct {
	kind  targetKind
	who   who
	life  life
	sel   kindSel
	index byte
	// forged handles: owner choice (0 me, 1 an executor, 2 an exited one, 3 zero, 4 never issued)
	owner byte
	key   uint64
	bit   uint
}

type actionKind int

const (
	actOp         actionKind = iota
	actDecoy                 // register a decoy (the kit's own type) on the executor
	actBusy                  // the op, inside a borrow of its own target by the kit
	actRunPending            // threadguard.RunPending on the executor
	actExit                  // the executor exits; a new one takes its slot
)

type step struct {
	slot   int
	action actionKind
	op     int
	target target
	arg    uint64
}

type input struct {
	data []byte
	pos  int
}

func (in *input) byte() byte {
	var b byte
	if in.pos < len(in.data) {
		b = in.data[in.pos]
	}
	in.pos++
	return b
}

func decode(spec *Spec, slots int, data []byte) []step {
	byClass := func(c opClass) []int {
		var ops []int
		for i, op := range spec.ops {
			if op.class == c {
				ops = append(ops, i)
			}
		}
		return ops
	}
	creates, calls := byClass(classCreate), byClass(classCall)
	destroys, laters := byClass(classDestroy), byClass(classDestroyLater)
	all := make([]int, len(spec.ops))
	for i := range all {
		all[i] = i
	}
	// Re-entrant steps: the operations that take a handle, of kinds with a tag.
	var reentrant []int
	for i, op := range spec.ops {
		if op.class != classCreate && spec.kinds[op.kind].tag != 0 {
			reentrant = append(reentrant, i)
		}
	}
	in := &input{data: data}
	var steps []step
	for in.pos < len(data) && len(steps) < MaxSteps {
		slot := int(in.byte()) % slots
		var class []int
		action := actOp
		switch b := in.byte(); {
		case b < 80:
			class = calls
		case b < 130:
			class = creates
		case b < 165:
			class = destroys
		case b < 190:
			class = laters
		case b < 205:
			steps = append(steps, step{slot: slot, action: actDecoy})
			continue
		case b < 215:
			steps = append(steps, step{slot: slot, action: actRunPending})
			continue
		case b < 230:
			steps = append(steps, step{slot: slot, action: actExit})
			continue
		case b < 243 && len(reentrant) > 0:
			class, action = reentrant, actBusy
		default:
			class = all
		}
		if len(class) == 0 {
			class = all
		}
		if len(class) == 0 {
			continue
		}
		op := class[int(in.byte())%len(class)]
		var t target
		switch {
		case action == actBusy:
			// The kit borrows the target first, so it is one of the
			// executor's live objects of the operation's kind when there is
			// one; the model predicts the borrow's refusal otherwise.
			t = target{kind: targetPick, who: whoMe, life: lifeLive, sel: kindSame, index: in.byte()}
		case spec.ops[op].class != classCreate:
			t = decodeTarget(in)
		}
		steps = append(steps, step{slot: slot, action: action, op: op, target: t, arg: uint64(in.byte())})
	}
	return steps
}

func decodeTarget(in *input) target {
	pick := func(w who, l life, s kindSel) target {
		return target{kind: targetPick, who: w, life: l, sel: s, index: in.byte()}
	}
	switch in.byte() % 16 {
	case 0, 1, 2, 3, 4, 5:
		return pick(whoMe, lifeLive, kindSame)
	case 6:
		return pick(whoAny, lifeLive, kindSame)
	case 7:
		return pick(whoOther, lifeLive, kindSame)
	case 8:
		return pick(whoMe, lifeLive, kindOther)
	case 9:
		return pick(whoAny, lifeDead, kindAny)
	case 10:
		return pick(whoExited, lifeAny, kindAny)
	case 11:
		return target{kind: targetNull}
	case 12:
		owner := in.byte() % 5
		return target{kind: targetForged, owner: owner, index: in.byte(),
			key: uint64(in.byte())*0x9e3779b97f4a7c15 | 1}
	case 13:
		return target{kind: targetFlipKey, index: in.byte(), bit: uint(in.byte() % 64)}
	case 14:
		// High bits only: a low bit would name whatever thread has that ID
		// in this process, which differs from run to run.
		return target{kind: targetFlipOwner, index: in.byte(), bit: 40 + uint(in.byte()%24)}
	}
	return pick(whoAny, lifeAny, kindAny)
}

// RandomProgram returns a random program from seed (xorshift64*), 8 to 200
// bytes long.
func RandomProgram(seed uint64) []byte {
	state := seed*0x9e3779b97f4a7c15 ^ 0xd1b54a32d192ed03
	next := func() uint64 {
		state ^= state >> 12
		state ^= state << 25
		state ^= state >> 27
		return state * 0x2545f4914f6cdd1d
	}
	n := 8 + int(next()%193)
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(next() >> 56)
	}
	return b
}
