//! Entry points about the process as a whole: the copies of threadguard loaded in it.

use super::boundary::{guarded, null_pointer};
use super::tg_status;

/// Writes to `*out_count` how many copies of threadguard this one can see loaded in the
/// process, itself included. More than 1 means the process is split: handles, last-error
/// messages and stats of one copy are invisible to the others (a handle registered through one
/// is TG_ERR_STALE to another). A copy also looks at a thread's first call, and when it words
/// the message of a TG_ERR_STALE refusal (tg_last_error, or a violation policy that prints it),
/// if a library was loaded since it last looked; the first time it
/// sees another copy it says so once on standard error, and from then on the messages of stale
/// handles say so too.
///
/// A copy finds the others through the process's global symbol scope (`tg_copies_loaded` as
/// seen by `dlsym` with RTLD_DEFAULT and RTLD_NEXT), so the count is a lower bound: a copy in
/// a library loaded with RTLD_LOCAL, or linked statically into an executable that does not
/// export its symbols, is seen only by copies it can see itself. Always 1 on targets other
/// than Linux.
///
/// Returns TG_OK, or TG_ERR_NULL_POINTER if `out_count` is NULL.
///
/// Caller's contract: `out_count` must be NULL or valid for writing one `uint32_t`.
#[cfg_attr(all(), doc = "# Safety\n\nThe caller's contract above.")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tg_copies_loaded(out_count: *mut u32) -> tg_status {
    guarded("tg_copies_loaded", || {
        if out_count.is_null() {
            return Err(null_pointer("tg_copies_loaded", "out_count"));
        }
        let count = u32::try_from(crate::copies_loaded()).unwrap_or(u32::MAX);
        // SAFETY: non-null (checked above) and valid for writes (the caller's contract).
        unsafe { out_count.write(count) };
        Ok(())
    })
}
