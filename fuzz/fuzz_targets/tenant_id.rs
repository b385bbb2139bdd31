//! TenantId / IdPolicy parsing: never panics; whatever is accepted is a DNS label
//! equal to the lowercased input and never a reserved id.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tenants_core::{IdPolicy, TenantId};

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let policy = IdPolicy::new().reserve(["www", "api", "admin"]);
    match TenantId::parse(input) {
        Ok(id) => {
            let s = id.as_str();
            assert_eq!(s, input.to_ascii_lowercase());
            assert!(!s.is_empty() && s.len() <= 63);
            assert!(
                s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            );
            assert!(!s.starts_with('-') && !s.ends_with('-'));
            assert_eq!(s.parse::<TenantId>().ok(), Some(id));
            let reserved = ["www", "api", "admin"].contains(&s);
            assert_eq!(policy.parse(input).is_ok(), !reserved);
        }
        Err(e) => {
            assert!(policy.parse(input).is_err());
            // The echoed input is truncated: messages stay bounded whatever the input.
            assert!(e.to_string().len() < 1000, "error messages stay short");
        }
    }
});
