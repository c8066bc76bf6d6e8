//! `THREADGUARD_SITES=1` switches the sites debug mode on at the first thread's first call.
//! One test per binary: the variable is read once per process.

#[test]
fn the_environment_variable_switches_the_mode_on_at_the_first_call() {
    // SAFETY: the only test of this binary, and no other thread of it reads the environment
    // while this runs (the library has not been called yet).
    unsafe { std::env::set_var("THREADGUARD_SITES", "1") };
    assert!(!threadguard::sites::enabled(), "not read before the first call");
    let line = line!() + 1;
    let handle = threadguard::register(1u8).unwrap();
    assert!(threadguard::sites::enabled(), "read at the first call");
    let error = threadguard::with(handle, |_: &mut u16| ()).unwrap_err();
    assert!(error.message().ends_with(&format!("; registered at tests/sites_env.rs:{line}")), "{}", error.message());
    threadguard::destroy(handle).unwrap();
}
