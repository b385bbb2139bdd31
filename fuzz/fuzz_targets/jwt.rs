//! The JWT resolver on arbitrary bearer tokens, and on mutations of a valid one: never
//! panics, and whatever it accepts, jsonwebtoken alone also verifies with the same key
//! and algorithm (so no forged, unsigned or mis-algorithmed token gets through).
#![no_main]

use std::sync::OnceLock;

use http::Request;
use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation, encode};
use libfuzzer_sys::fuzz_target;
use tenants_core::resolve::{Algorithm, JwtKeys, JwtResolver, Resolver};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-fuzz-secret";
const RSA_PUBLIC: &[u8] = include_bytes!("../../crates/tenants-core/tests/fixtures/rsa_public.pem");

struct Fixture {
    resolver: JwtResolver,
    valid: String,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let keys = JwtKeys::new()
            .hmac(SECRET, Algorithm::HS256)
            .unwrap()
            .rsa_pem(RSA_PUBLIC, Algorithm::RS256)
            .unwrap();
        let claims = serde_json::json!({"sub": "u", "exp": 4_000_000_000u64, "tenant_id": "acme"});
        let valid = encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        Fixture {
            resolver: JwtResolver::new(keys).members_claim("tenants"),
            valid,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let fixture = fixture();
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Half the inputs are raw tokens, half splice the input into the valid token.
    let token = match text.split_once('|') {
        Some((at, insert)) => {
            let at: usize = at.parse().unwrap_or(0) % (fixture.valid.len() + 1);
            let mut token = fixture.valid.clone();
            if token.is_char_boundary(at) {
                token.insert_str(at, insert);
            }
            token
        }
        None => text.to_owned(),
    };
    let Ok(request) = Request::get("/")
        .header("authorization", format!("Bearer {token}"))
        .body(())
    else {
        return;
    };
    let (parts, ()) = request.into_parts();
    if let Ok(Some(found)) = fixture.resolver.resolve(&parts) {
        let header_value = parts.headers["authorization"].to_str().unwrap();
        let sent = header_value["Bearer ".len()..].trim();
        let hs = jsonwebtoken::decode::<serde_json::Value>(
            sent,
            &DecodingKey::from_secret(SECRET),
            &Validation::new(Algorithm::HS256),
        );
        let rs = jsonwebtoken::decode::<serde_json::Value>(
            sent,
            &DecodingKey::from_rsa_pem(RSA_PUBLIC).unwrap(),
            &Validation::new(Algorithm::RS256),
        );
        assert!(
            hs.is_ok() || rs.is_ok(),
            "accepted a token jsonwebtoken rejects"
        );
        assert!(found.id().is_some());
    }
});
