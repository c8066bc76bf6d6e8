//! The C header is the C user's manual: it lists every status code each entry point can
//! return, and carries no Rust-only Markdown (such as `# Safety` headings).

const HEADER: &str = include_str!("../include/threadguard.h");

/// The doc comment just above the declaration of `function` in the header.
fn doc_of(function: &str) -> &'static str {
    let mut offset = 0;
    let declaration = HEADER
        .lines()
        .find_map(|line| {
            let start = offset;
            offset += line.len() + 1;
            let declares = !line.starts_with([' ', '/', '#']) && line.contains(&format!(" {function}("));
            declares.then_some(start)
        })
        .unwrap_or_else(|| panic!("{function} is declared in the header"));
    let before = &HEADER[..declaration];
    let end = before.rfind("*/").expect("a doc comment precedes the declaration");
    let start = before[..end].rfind("/**").expect("the doc comment opens");
    &HEADER[start..end]
}

#[test]
fn the_header_carries_no_rust_markdown_headings() {
    let headings: Vec<&str> = HEADER
        .lines()
        .filter(|line| line.trim_start().trim_start_matches('*').trim_start().starts_with("# "))
        .collect();
    assert!(headings.is_empty(), "Markdown headings in the C header: {headings:?}");
}

#[test]
fn entry_points_document_every_status_they_can_return() {
    let expected: &[(&str, &[&str])] = &[
        ("tg_with", &["TG_ERR_SHUT_DOWN", "TG_ERR_LIMIT", "TG_ERR_PANIC", "TG_ERR_BUSY", "TG_ERR_NULL_POINTER"]),
        ("tg_register", &["TG_ERR_SHUT_DOWN", "TG_ERR_LIMIT", "TG_ERR_PANIC", "TG_ERR_NULL_POINTER"]),
        ("tg_destroy_later", &["TG_ERR_LIMIT", "TG_ERR_OWNER_EXITED"]),
        ("tg_detach", &["TG_ERR_STALE", "TG_ERR_WRONG_TYPE", "TG_ERR_BUSY", "TG_ERR_NULL_POINTER", "TG_ERR_PANIC"]),
        (
            "tg_adopt",
            &["TG_ERR_NULL_HANDLE", "TG_ERR_STALE", "TG_ERR_NULL_POINTER", "TG_ERR_SHUT_DOWN", "TG_ERR_LIMIT"],
        ),
        ("tg_token_destroy", &["TG_ERR_NULL_HANDLE", "TG_ERR_STALE", "TG_ERR_PANIC"]),
        ("tg_register_at", &["TG_ERR_NULL_POINTER", "TG_ERR_SHUT_DOWN", "TG_ERR_LIMIT", "TG_ERR_PANIC"]),
    ];
    for (function, codes) in expected {
        let doc = doc_of(function);
        for code in *codes {
            assert!(doc.contains(code), "the header's doc of {function} does not mention {code}:\n{doc}");
        }
    }
}

#[test]
fn unsafe_entry_points_state_their_contract_for_c_callers() {
    for function in ["tg_register", "tg_with", "tg_owner_of", "tg_last_error", "tg_get_stats", "tg_set_thread_name"] {
        assert!(doc_of(function).contains("Caller's contract:"), "{function} states no contract in the header");
    }
}

#[test]
fn the_header_declares_only_threadguard_names() {
    let foreign: Vec<&str> = HEADER
        .lines()
        .filter(|line| !line.starts_with([' ', '/', '*']) && !line.is_empty())
        .filter(|line| {
            let named = |name: &str| name.starts_with("tg_") || name.starts_with("TG_") || name == "THREADGUARD_H";
            if let Some(rest) = line.strip_prefix("#define ") {
                return !named(rest.split_whitespace().next().unwrap_or(""));
            }
            if line.starts_with('#') || line.starts_with('}') || line.starts_with("extern \"C\" {") {
                return false;
            }
            // A function pointer type: its name is inside `(*name)`.
            if let Some((_, rest)) = line.split_once("(*") {
                return !named(rest.split(')').next().unwrap_or(""));
            }
            // A declaration: its name is the last identifier before `(`, `;` or `{`.
            let head = line.split(['(', ';', '{']).next().unwrap_or("");
            let name = head.split_whitespace().last().unwrap_or("").trim_start_matches('*');
            !name.is_empty() && !named(name)
        })
        .collect();
    assert!(foreign.is_empty(), "the header declares names that are not threadguard's: {foreign:?}");
}
