//! Which values of `THREADGUARD_SITES` switch the sites mode on: `1`, `on`, `true` and `yes`,
//! in any case and with surrounding blanks; anything else leaves it off. The variable is read
//! once per process, so each value is tried in a child process (this test binary again,
//! running only `child`).

use std::process::Command;

const EXPECT: &str = "TG_SITES_SPELLING_EXPECT";

/// In a child: the first call reads the variable; the mode is then what the parent expects.
#[test]
fn child() {
    let Some(expected) = std::env::var_os(EXPECT) else { return };
    let handle = threadguard::register(1u8).unwrap();
    assert_eq!(threadguard::sites::enabled(), expected == "on");
    threadguard::destroy(handle).unwrap();
}

#[test]
fn one_on_true_and_yes_switch_the_mode_on_in_any_case_and_other_values_do_not() {
    let cases = [
        ("1", "on"),
        (" ON ", "on"),
        ("True", "on"),
        ("yes", "on"),
        ("0", "off"),
        ("off", "off"),
        ("enabled", "off"),
        ("", "off"),
    ];
    for (value, expected) in cases {
        let output = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child", "--test-threads=1"])
            .env("THREADGUARD_SITES", value)
            .env(EXPECT, expected)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "THREADGUARD_SITES={value:?} should leave the mode {expected}:\n{stdout}");
        assert!(stdout.contains("1 passed"), "the child ran:\n{stdout}");
    }
}
