//! Token verification, key ring and token cache tests. Verification is table-driven: one row
//! per case, named after research/attack-cases.md (A4, B2, …) where a row covers one.
//!
//! Every key is made here at test time from a label; no key material is committed.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use std::ops::{Add, Mul, Rem, Shl};
use std::sync::OnceLock;

use jwt_compact::alg::RsaPrivateKey;
use jwt_compact::AlgorithmSignature;
use serde_json::json;
use sha2::{Digest as _, Sha256};

use super::*;

const NOW: u64 = 1_700_000_000;
const ISSUER: &str = "https://registry-gate.test/token";
const AUDIENCE: &str = "registry.test";

fn settings() -> VerifierSettings {
    VerifierSettings {
        issuer: ISSUER.to_owned(),
        audience: AUDIENCE.to_owned(),
        algorithms: Algorithm::ALL.to_vec(),
        leeway_secs: 60,
        max_token_bytes: 8 * 1024,
        max_lifetime_secs: 3600,
    }
}

// ---------------------------------------------------------------------------------------
// Keys, all made at test time.
// ---------------------------------------------------------------------------------------

type EdSigningKey = <Ed25519 as JwsAlgorithm>::SigningKey;
type EsSigningKey = <Es256 as JwsAlgorithm>::SigningKey;

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Deterministic test bytes: SHA-256(label ‖ counter) blocks.
fn derive(label: &str, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut counter = 0_u32;
    while out.len() < len {
        let mut hasher = Sha256::new();
        hasher.update(label.as_bytes());
        hasher.update(counter.to_be_bytes());
        out.extend_from_slice(&hasher.finalize());
        counter += 1;
    }
    out.truncate(len);
    out
}

/// An Ed25519 key pair derived at test time from `label`.
fn ed25519_key(label: &str) -> EdSigningKey {
    let seed: [u8; 32] = derive(label, 32).try_into().unwrap();
    let pair = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new(seed));
    EdSigningKey::from_slice(pair.sk.as_ref()).unwrap()
}

/// An RSA key derived at test time from `label`: two 1024-bit primes found by a
/// deterministic search (small-prime sieve, then Miller–Rabin with 12 fixed bases) and
/// combined by `RsaPrivateKey::from_p_q`. Generic over the big-integer type because `rsa`'s
/// `BigUint` cannot be named here; it is inferred from `from_p_q`'s signature.
fn derive_rsa_key<T, R>(from_p_q: fn(T, T, T) -> R, label: &str) -> R
where
    T: Clone + PartialEq + From<u64> + Shl<usize, Output = T> + Add<Output = T>,
    for<'a> &'a T: Mul<&'a T, Output = T> + Rem<&'a T, Output = T>,
{
    let to_big = |bytes: &[u8]| {
        bytes
            .iter()
            .fold(T::from(0), |acc, &b| (acc << 8) + T::from(u64::from(b)))
    };
    let mod_pow = |base: &T, exponent: &[u8], modulus: &T| {
        let mut acc = T::from(1);
        for byte in exponent {
            for bit in (0..8).rev() {
                acc = &(&acc * &acc) % modulus;
                if (byte >> bit) & 1 == 1 {
                    acc = &(&acc * base) % modulus;
                }
            }
        }
        acc
    };
    let is_probable_prime = |candidate: &[u8]| {
        let n = to_big(candidate);
        let mut n_minus_1 = candidate.to_vec();
        *n_minus_1.last_mut().unwrap() &= 0xfe; // candidate is odd
        let s = trailing_zero_bits(&n_minus_1);
        let d = shift_right(&n_minus_1, s);
        let one = T::from(1);
        let minus_one = to_big(&n_minus_1);
        [2_u64, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37]
            .into_iter()
            .all(|witness| {
                let mut x = mod_pow(&T::from(witness), &d, &n);
                if x == one || x == minus_one {
                    return true;
                }
                for _ in 1..s {
                    x = &(&x * &x) % &n;
                    if x == minus_one {
                        return true;
                    }
                }
                false
            })
    };
    let small_primes = small_primes(2000);
    let find_prime = |label: &str| {
        let mut candidate = derive(label, 128);
        candidate[0] |= 0xc0; // two top bits: the product has exactly 2048 bits
        candidate[127] |= 1;
        loop {
            let sieved = small_primes.iter().all(|&p| mod_small(&candidate, p) != 0);
            // e = 65537 must be invertible mod p − 1.
            if sieved && mod_small(&candidate, 65537) != 1 && is_probable_prime(&candidate) {
                return candidate;
            }
            add_small(&mut candidate, 2);
        }
    };
    let p = find_prime(&format!("{label}/p"));
    let q = find_prime(&format!("{label}/q"));
    from_p_q(to_big(&p), to_big(&q), T::from(65537))
}

fn small_primes(below: u32) -> Vec<u32> {
    (3..below)
        .filter(|n| (2..*n).take_while(|d| d * d <= *n).all(|d| n % d != 0))
        .collect()
}

fn mod_small(be: &[u8], m: u32) -> u32 {
    let m = u64::from(m);
    (be.iter()
        .fold(0_u64, |acc, &b| ((acc << 8) | u64::from(b)) % m)) as u32
}

fn add_small(be: &mut [u8], mut carry: u32) {
    for byte in be.iter_mut().rev() {
        let sum = u32::from(*byte) + carry;
        *byte = sum as u8;
        carry = sum >> 8;
        if carry == 0 {
            break;
        }
    }
}

fn trailing_zero_bits(be: &[u8]) -> usize {
    let mut bits = 0;
    for &byte in be.iter().rev() {
        if byte == 0 {
            bits += 8;
        } else {
            return bits + byte.trailing_zeros() as usize;
        }
    }
    bits
}

fn shift_right(be: &[u8], bits: usize) -> Vec<u8> {
    let (bytes, bits) = (bits / 8, bits % 8);
    let kept = &be[..be.len() - bytes];
    let mut out = vec![0_u8; kept.len()];
    for (i, byte) in kept.iter().enumerate() {
        out[i] |= byte >> bits;
        if bits > 0 && i + 1 < kept.len() {
            out[i + 1] |= byte << (8 - bits);
        }
    }
    out
}

struct TestKeys {
    ed: EdSigningKey,
    /// A different Ed25519 key, for "wrong key, same kid".
    ed_other: EdSigningKey,
    es: EsSigningKey,
    es_other: EsSigningKey,
    rsa: RsaPrivateKey,
    hs: Vec<u8>,
    specs: Vec<KeySpec>,
    ring: KeyRing,
}

fn spec(kid: &str, alg: Algorithm, jwk: Value) -> KeySpec {
    let Value::Object(jwk) = jwk else {
        panic!("jwk must be an object")
    };
    KeySpec {
        kid: kid.to_owned(),
        alg,
        jwk,
    }
}

fn ed_jwk(key: &EdSigningKey) -> Value {
    json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&key.public_key()[..])})
}

fn es_jwk(key: &EsSigningKey) -> Value {
    serde_json::to_value(JsonWebKey::from(key.verifying_key())).unwrap()
}

fn rsa_jwk(key: &RsaPrivateKey) -> Value {
    serde_json::to_value(JsonWebKey::from(&key.to_public_key())).unwrap()
}

fn keys() -> &'static TestKeys {
    static KEYS: OnceLock<TestKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let ed = ed25519_key("registry-gate test ed25519");
        let ed_other = ed25519_key("registry-gate test ed25519 #2");
        let es = EsSigningKey::from_slice(&derive("registry-gate test p256", 32)).unwrap();
        let es_other = EsSigningKey::from_slice(&derive("registry-gate test p256 #2", 32)).unwrap();
        let rsa = derive_rsa_key(RsaPrivateKey::from_p_q, "registry-gate test rsa").unwrap();
        let hs = derive("registry-gate test hmac", 32);
        let specs = vec![
            spec("ed-1", Algorithm::EdDSA, ed_jwk(&ed)),
            spec("es-1", Algorithm::ES256, es_jwk(&es)),
            spec("rs-1", Algorithm::RS256, rsa_jwk(&rsa)),
            spec(
                "hs-1",
                Algorithm::HS256,
                json!({"kty": "oct", "k": b64(&hs)}),
            ),
        ];
        let ring = KeyRing::from_specs(&specs).unwrap();
        TestKeys {
            ed,
            ed_other,
            es,
            es_other,
            rsa,
            hs,
            specs,
            ring,
        }
    })
}

// ---------------------------------------------------------------------------------------
// Minting tokens by hand, so headers and payloads can be malformed at will.
// ---------------------------------------------------------------------------------------

enum Signer<'a> {
    Ed(&'a EdSigningKey),
    Es(&'a EsSigningKey),
    Rs(&'a RsaPrivateKey),
    Hs(&'a [u8]),
    /// These exact signature bytes.
    Raw(Vec<u8>),
}

fn sign(signer: &Signer<'_>, input: &[u8]) -> Vec<u8> {
    match signer {
        Signer::Ed(key) => Ed25519.sign(key, input).as_bytes().into_owned(),
        Signer::Es(key) => Es256.sign(key, input).as_bytes().into_owned(),
        Signer::Rs(key) => Rsa::rs256().sign(key, input).as_bytes().into_owned(),
        Signer::Hs(key) => Hs256
            .sign(&Hs256Key::new(key), input)
            .as_bytes()
            .into_owned(),
        Signer::Raw(bytes) => bytes.clone(),
    }
}

fn mint_raw(header: &[u8], payload: &[u8], signer: &Signer<'_>) -> String {
    let input = format!("{}.{}", b64(header), b64(payload));
    let signature = sign(signer, input.as_bytes());
    format!("{input}.{}", b64(&signature))
}

fn mint(header: &Value, payload: &Value, signer: &Signer<'_>) -> String {
    mint_raw(
        &serde_json::to_vec(header).unwrap(),
        &serde_json::to_vec(payload).unwrap(),
        signer,
    )
}

fn signer(alg: Algorithm) -> Signer<'static> {
    let keys = keys();
    match alg {
        Algorithm::EdDSA => Signer::Ed(&keys.ed),
        Algorithm::ES256 => Signer::Es(&keys.es),
        Algorithm::RS256 => Signer::Rs(&keys.rsa),
        Algorithm::HS256 => Signer::Hs(&keys.hs),
    }
}

fn kid(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::EdDSA => "ed-1",
        Algorithm::ES256 => "es-1",
        Algorithm::RS256 => "rs-1",
        Algorithm::HS256 => "hs-1",
    }
}

fn header(alg: &str, kid: &str) -> Value {
    json!({"typ": "JWT", "alg": alg, "kid": kid})
}

fn claims() -> Value {
    json!({
        "iss": ISSUER,
        "sub": "alice",
        "aud": AUDIENCE,
        "exp": NOW + 300,
        "nbf": NOW - 10,
        "iat": NOW - 10,
        "jti": "token-1",
        "access": [{"type": "repository", "name": "team/app", "actions": ["pull"]}],
    })
}

fn set(mut value: Value, member: &str, to: Value) -> Value {
    value[member] = to;
    value
}

fn unset(mut value: Value, member: &str) -> Value {
    value.as_object_mut().unwrap().remove(member);
    value
}

/// A well-formed token for `alg`, signed by the ring's key.
fn token(alg: Algorithm) -> String {
    token_with(alg, &claims())
}

fn token_with(alg: Algorithm, payload: &Value) -> String {
    mint(&header(alg.name(), kid(alg)), payload, &signer(alg))
}

/// An EdDSA token with these header members on top of `alg`/`kid`/`typ`.
fn ed_token_with_header(extra: Value) -> String {
    let mut header = header("EdDSA", "ed-1");
    for (name, value) in extra.as_object().unwrap() {
        header[name] = value.clone();
    }
    mint(&header, &claims(), &signer(Algorithm::EdDSA))
}

/// An EdDSA token whose claims are `claims()` with `member` set (or removed for `None`).
fn ed_claim(member: &str, to: Option<Value>) -> String {
    let payload = match to {
        Some(value) => set(claims(), member, value),
        None => unset(claims(), member),
    };
    token_with(Algorithm::EdDSA, &payload)
}

/// An EdDSA token with `exp`, `nbf` and `iat` as given (absent for `None`).
fn ed_times(exp: Option<i64>, nbf: Option<i64>, iat: Option<i64>) -> String {
    let mut payload = claims();
    for (member, value) in [("exp", exp), ("nbf", nbf), ("iat", iat)] {
        payload = match value {
            Some(t) => set(payload, member, json!(t)),
            None => unset(payload, member),
        };
    }
    token_with(Algorithm::EdDSA, &payload)
}

fn now_plus(secs: i64) -> Option<i64> {
    Some(NOW as i64 + secs)
}

fn segments(token: &str) -> Vec<String> {
    token.split('.').map(str::to_owned).collect()
}

fn join(parts: &[&str]) -> String {
    parts.join(".")
}

/// The token with its payload replaced (signature kept).
fn with_payload(token: &str, payload: &Value) -> String {
    let parts = segments(token);
    join(&[
        &parts[0],
        &b64(&serde_json::to_vec(payload).unwrap()),
        &parts[2],
    ])
}

/// Sets the unused low bits of the last base64url character: same bytes, non-canonical text.
fn non_canonical(segment: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    assert_ne!(segment.len() % 4, 0, "segment has no unused bits");
    let last = *segment.as_bytes().last().unwrap();
    let index = ALPHABET.iter().position(|&c| c == last).unwrap();
    let mut out = segment[..segment.len() - 1].to_owned();
    out.push(ALPHABET[index | 1] as char);
    assert_ne!(out, segment);
    out
}

fn access_entries(count: usize, actions: usize) -> Value {
    let actions: Vec<String> = (0..actions).map(|i| format!("a{i}")).collect();
    Value::Array(
        (0..count)
            .map(|i| json!({"type": "repository", "name": format!("r/{i}"), "actions": actions}))
            .collect(),
    )
}

// ---------------------------------------------------------------------------------------
// The verification table.
// ---------------------------------------------------------------------------------------

struct Case {
    name: &'static str,
    token: String,
    settings: VerifierSettings,
    want: Result<(), TokenError>,
}

fn ok(name: &'static str, token: String) -> Case {
    Case {
        name,
        token,
        settings: settings(),
        want: Ok(()),
    }
}

fn err(name: &'static str, token: String, error: TokenError) -> Case {
    Case {
        name,
        token,
        settings: settings(),
        want: Err(error),
    }
}

impl Case {
    fn settings(mut self, change: impl FnOnce(&mut VerifierSettings)) -> Self {
        change(&mut self.settings);
        self
    }
}

fn cases() -> Vec<Case> {
    use Algorithm::*;
    use TokenError::*;

    let keys = keys();
    let ed = token(EdDSA);
    let ed_parts = segments(&ed);
    let ed_header = ed_parts[0].as_str();
    let ed_payload = ed_parts[1].as_str();
    let ed_signature = ed_parts[2].as_str();
    let ed_claims_bytes = serde_json::to_vec(&claims()).unwrap();
    let ed_header_json = br#"{"typ":"JWT","alg":"EdDSA","kid":"ed-1"}"#;
    let ed_signer = signer(EdDSA);
    let raw_ed_header = |header: &[u8]| mint_raw(header, &ed_claims_bytes, &ed_signer);
    let raw_ed_payload = |payload: &[u8]| mint_raw(ed_header_json, payload, &ed_signer);
    let tampered = set(claims(), "sub", json!("admin"));
    let hs_with =
        |kid: &str, secret: &[u8]| mint(&header("HS256", kid), &claims(), &Signer::Hs(secret));

    vec![
        // Valid tokens.
        ok("valid_eddsa", token(EdDSA)),
        ok("valid_es256", token(ES256)),
        ok("valid_rs256", token(RS256)),
        ok("valid_hs256", token(HS256)),
        ok(
            "valid_without_typ",
            mint(
                &json!({"alg": "EdDSA", "kid": "ed-1"}),
                &claims(),
                &ed_signer,
            ),
        ),
        ok(
            "valid_typ_lowercase",
            ed_token_with_header(json!({"typ": "jwt"})),
        ),
        ok(
            "valid_unknown_header_member_ignored",
            ed_token_with_header(json!({"x5t#S256": "abc", "ext": 1})),
        ),
        ok(
            "valid_aud_one_element_array",
            ed_claim("aud", Some(json!([AUDIENCE]))),
        ),
        ok(
            "valid_anonymous_without_sub_or_access",
            token_with(EdDSA, &unset(unset(claims(), "sub"), "access")),
        ),
        ok(
            "valid_exp_as_float",
            ed_claim("exp", Some(json!(NOW as f64 + 300.5))),
        ),
        ok("valid_without_jti", ed_claim("jti", None)),
        ok(
            "valid_extra_claims_ignored",
            ed_claim("class", Some(json!("image"))),
        ),
        // 1A A4: structure.
        err("a4_empty_token", String::new(), BadFormat),
        err("a4_two_segments", join(&[ed_header, ed_payload]), BadFormat),
        err(
            "a4_four_segments",
            format!("{ed}.{ed_signature}"),
            BadFormat,
        ),
        err(
            "a4_empty_header",
            join(&["", ed_payload, ed_signature]),
            BadFormat,
        ),
        err(
            "a4_empty_payload",
            join(&[ed_header, "", ed_signature]),
            BadFormat,
        ),
        err(
            "a4_empty_signature",
            join(&[ed_header, ed_payload, ""]),
            BadFormat,
        ),
        err(
            "a4_empty_signature_before_key_lookup",
            format!(
                "{}.{ed_payload}.",
                b64(br#"{"alg":"EdDSA","kid":"no-such-key"}"#)
            ),
            BadFormat,
        ),
        err("a4_only_dots", "..".to_owned(), BadFormat),
        err("a4_single_segment", ed_header.to_owned(), BadFormat),
        // 1A A5: size cap before splitting.
        err("a5_one_mib_of_dots", ".".repeat(1 << 20), TooLarge),
        err(
            "a5_100_kib_random",
            b64(&derive("random", 100 * 1024)),
            TooLarge,
        ),
        err("a5_dots_within_limit", ".".repeat(8 * 1024), BadFormat),
        err("a5_one_byte_over_limit", ed.clone(), TooLarge)
            .settings(|s| s.max_token_bytes = ed.len() - 1),
        ok("a5_exactly_at_limit", ed.clone()).settings(|s| s.max_token_bytes = ed.len()),
        // 1A A6: encoding.
        err(
            "a6_padding_on_header",
            join(&[&format!("{ed_header}="), ed_payload, ed_signature]),
            BadFormat,
        ),
        err("a6_padding_on_signature", format!("{ed}=="), BadFormat),
        err(
            "a6_plus_in_payload",
            join(&[ed_header, &format!("+{ed_payload}"), ed_signature]),
            BadFormat,
        ),
        err("a6_slash_in_signature", format!("{ed}/"), BadFormat),
        err(
            "a6_inner_space",
            join(&[
                ed_header,
                &format!("{} {}", &ed_payload[..4], &ed_payload[4..]),
                ed_signature,
            ]),
            BadFormat,
        ),
        err("a6_leading_space", format!(" {ed}"), BadFormat),
        err("a6_trailing_newline", format!("{ed}\n"), BadFormat),
        err(
            "a6_tab",
            format!("{ed_header}\t.{ed_payload}.{ed_signature}"),
            BadFormat,
        ),
        err(
            "a6_percent_encoded_dot",
            format!("{ed_header}%2E{ed_payload}.{ed_signature}"),
            BadFormat,
        ),
        err("a6_non_ascii", format!("{ed}é"), BadFormat),
        err(
            "a6_non_canonical_trailing_bits",
            join(&[ed_header, ed_payload, &non_canonical(ed_signature)]),
            BadFormat,
        ),
        err(
            "a6_impossible_length",
            join(&[ed_header, ed_payload, &format!("{ed_signature}AAA")]),
            BadFormat,
        ),
        err("a6_header_is_array", raw_ed_header(b"[]"), BadHeader),
        err("a6_header_is_string", raw_ed_header(br#""str""#), BadHeader),
        err("a6_header_is_null", raw_ed_header(b"null"), BadHeader),
        err(
            "a6_header_truncated_json",
            raw_ed_header(br#"{"alg":"EdDSA","kid":"ed-1""#),
            BadHeader,
        ),
        err(
            "a6_header_with_bom",
            raw_ed_header(b"\xef\xbb\xbf{\"alg\":\"EdDSA\",\"kid\":\"ed-1\"}"),
            BadHeader,
        ),
        err(
            "a6_header_invalid_utf8",
            raw_ed_header(b"{\"alg\":\"EdDSA\",\"kid\":\"ed-\xff\"}"),
            BadHeader,
        ),
        err(
            "a6_header_trailing_bytes",
            raw_ed_header(br#"{"alg":"EdDSA","kid":"ed-1"} x"#),
            BadHeader,
        ),
        err(
            "a6_header_duplicate_alg",
            raw_ed_header(br#"{"alg":"EdDSA","kid":"ed-1","alg":"HS256"}"#),
            BadHeader,
        ),
        err(
            "a6_header_duplicate_kid",
            raw_ed_header(br#"{"alg":"EdDSA","kid":"ed-1","kid":"hs-1"}"#),
            BadHeader,
        ),
        err(
            "a6_header_empty_bytes_is_not_json",
            raw_ed_header(b" "),
            BadHeader,
        ),
        err("a6_payload_is_array", raw_ed_payload(b"[]"), BadClaims),
        err(
            "a6_payload_is_string",
            raw_ed_payload(br#""str""#),
            BadClaims,
        ),
        err(
            "a6_payload_truncated_json",
            raw_ed_payload(&ed_claims_bytes[..ed_claims_bytes.len() - 1]),
            BadClaims,
        ),
        err(
            "a6_payload_with_bom",
            raw_ed_payload(&[b"\xef\xbb\xbf".as_slice(), &ed_claims_bytes].concat()),
            BadClaims,
        ),
        err(
            "a6_payload_invalid_utf8",
            raw_ed_payload(
                &[
                    format!(
                        r#"{{"iss":"{ISSUER}","aud":"{AUDIENCE}","exp":{},"sub":"al"#,
                        NOW + 60
                    )
                    .as_bytes(),
                    b"\xff",
                    br#"ice"}"#,
                ]
                .concat(),
            ),
            BadClaims,
        ),
        err(
            "a6_payload_duplicate_exp",
            raw_ed_payload(
                format!(
                    r#"{{"iss":"{ISSUER}","aud":"{AUDIENCE}","exp":{},"exp":{}}}"#,
                    NOW + 60,
                    NOW + 999_999
                )
                .as_bytes(),
            ),
            BadClaims,
        ),
        err(
            "a6_payload_duplicate_iss",
            raw_ed_payload(
                format!(
                    r#"{{"iss":"{ISSUER}","aud":"{AUDIENCE}","exp":{},"iss":"evil"}}"#,
                    NOW + 60
                )
                .as_bytes(),
            ),
            BadClaims,
        ),
        err(
            "a6_signature_wrong_length",
            mint(
                &header("EdDSA", "ed-1"),
                &claims(),
                &Signer::Raw(vec![7; 63]),
            ),
            BadSignature,
        ),
        // 1A A8: compact serialization only, never decompress.
        err(
            "a8_json_serialization",
            json!({"protected": ed_header, "payload": ed_payload, "signature": ed_signature})
                .to_string(),
            BadFormat,
        ),
        err(
            "a8_mixed_compact_and_json",
            format!(r#"{ed}{{"protected":"{ed_header}","payload":"{ed_payload}"}}"#),
            BadFormat,
        ),
        err(
            "a8_jwe_five_segments",
            join(&[ed_header, "", "AAAA", ed_payload, ed_signature]),
            BadFormat,
        ),
        err(
            "a8_jwe_five_nonempty_segments",
            join(&[ed_header, "AAAA", "AAAA", ed_payload, ed_signature]),
            BadFormat,
        ),
        err(
            "a8_zip_deflate",
            ed_token_with_header(json!({"zip": "DEF"})),
            BadHeader,
        ),
        err(
            "a8_cty_nested_jwt",
            ed_token_with_header(json!({"cty": "JWT"})),
            BadHeader,
        ),
        err(
            "a8_cty_json",
            ed_token_with_header(json!({"cty": "json"})),
            BadHeader,
        ),
        // 1B B1: the algorithm is an exact match from the allow-list.
        err(
            "b1_none_empty_signature",
            format!("{}.{ed_payload}.", b64(br#"{"alg":"none","kid":"ed-1"}"#)),
            BadFormat,
        ),
        err(
            "b1_none_with_signature",
            mint(&header("none", "ed-1"), &claims(), &ed_signer),
            AlgorithmNotAllowed,
        ),
        err(
            "b1_None",
            mint(&header("None", "ed-1"), &claims(), &ed_signer),
            AlgorithmNotAllowed,
        ),
        err(
            "b1_nOnE",
            mint(&header("nOnE", "ed-1"), &claims(), &ed_signer),
            AlgorithmNotAllowed,
        ),
        err(
            "b1_NONE",
            mint(&header("NONE", "ed-1"), &claims(), &ed_signer),
            AlgorithmNotAllowed,
        ),
        err(
            "b1_rs256_trailing_space",
            mint(&header("RS256 ", "rs-1"), &claims(), &signer(RS256)),
            AlgorithmNotAllowed,
        ),
        err(
            "b1_rs256_lowercase",
            mint(&header("rs256", "rs-1"), &claims(), &signer(RS256)),
            AlgorithmNotAllowed,
        ),
        err(
            "b1_rs256_nul",
            mint(&header("RS256\u{0}", "rs-1"), &claims(), &signer(RS256)),
            AlgorithmNotAllowed,
        ),
        err(
            "b1_eddsa_lowercase",
            mint(&header("eddsa", "ed-1"), &claims(), &ed_signer),
            AlgorithmNotAllowed,
        ),
        err(
            "b1_ed25519_name",
            mint(&header("Ed25519", "ed-1"), &claims(), &ed_signer),
            AlgorithmNotAllowed,
        ),
        err(
            "b1_alg_number",
            ed_token_with_header(json!({"alg": 256})),
            AlgorithmNotAllowed,
        ),
        err(
            "b1_alg_array",
            ed_token_with_header(json!({"alg": ["EdDSA"]})),
            AlgorithmNotAllowed,
        ),
        err(
            "b1_alg_null",
            ed_token_with_header(json!({"alg": null})),
            AlgorithmNotAllowed,
        ),
        err(
            "b1_alg_object",
            ed_token_with_header(json!({"alg": {"name": "EdDSA"}})),
            AlgorithmNotAllowed,
        ),
        err(
            "b1_alg_missing",
            mint(&json!({"kid": "ed-1"}), &claims(), &ed_signer),
            BadHeader,
        ),
        err(
            "b1_unsupported_hs512",
            mint(
                &header("HS512", "hs-1"),
                &claims(),
                &Signer::Raw(vec![1; 64]),
            ),
            AlgorithmNotAllowed,
        ),
        // 1B B2: HS256 MAC'd with a public key's bytes never meets an HMAC key.
        err(
            "b2_hs256_with_ed25519_public_key_bytes",
            hs_with("ed-1", &keys.ed.public_key()[..]),
            AlgorithmNotAllowed,
        ),
        err(
            "b2_hs256_with_ed25519_public_jwk_json",
            hs_with("ed-1", ed_jwk(&keys.ed).to_string().as_bytes()),
            AlgorithmNotAllowed,
        ),
        err(
            "b2_hs256_with_es256_public_sec1",
            hs_with(
                "es-1",
                keys.es.verifying_key().to_encoded_point(false).as_bytes(),
            ),
            AlgorithmNotAllowed,
        ),
        err(
            "b2_hs256_with_es256_public_jwk_json",
            hs_with("es-1", es_jwk(&keys.es).to_string().as_bytes()),
            AlgorithmNotAllowed,
        ),
        err(
            "b2_hs256_with_rsa_modulus",
            hs_with(
                "rs-1",
                &URL_SAFE_NO_PAD
                    .decode(rsa_jwk(&keys.rsa)["n"].as_str().unwrap())
                    .unwrap(),
            ),
            AlgorithmNotAllowed,
        ),
        err(
            "b2_hs256_with_rsa_public_jwk_json",
            hs_with("rs-1", rsa_jwk(&keys.rsa).to_string().as_bytes()),
            AlgorithmNotAllowed,
        ),
        // 1B B3: each key is used with exactly one algorithm.
        err(
            "b3_rsa_key_ps256",
            mint(&header("PS256", "rs-1"), &claims(), &signer(RS256)),
            AlgorithmNotAllowed,
        ),
        err(
            "b3_rsa_key_rs512",
            mint(&header("RS512", "rs-1"), &claims(), &signer(RS256)),
            AlgorithmNotAllowed,
        ),
        err(
            "b3_ec_key_es384",
            mint(&header("ES384", "es-1"), &claims(), &signer(ES256)),
            AlgorithmNotAllowed,
        ),
        err(
            "b3_rsa_key_with_es256",
            mint(&header("ES256", "rs-1"), &claims(), &signer(ES256)),
            AlgorithmNotAllowed,
        ),
        err(
            "b3_ed_key_with_rs256",
            mint(&header("RS256", "ed-1"), &claims(), &signer(RS256)),
            AlgorithmNotAllowed,
        ),
        err(
            "b3_ec_key_with_eddsa",
            mint(&header("EdDSA", "es-1"), &claims(), &ed_signer),
            AlgorithmNotAllowed,
        ),
        err(
            "b3_hmac_key_with_eddsa",
            mint(&header("EdDSA", "hs-1"), &claims(), &ed_signer),
            AlgorithmNotAllowed,
        ),
        // 1C C2/C3: no key material from the token, no fetch.
        err(
            "c2_jku_metadata_address",
            ed_token_with_header(json!({"jku": "http://169.254.169.254/latest/meta-data/"})),
            KeyMaterialInHeader("jku"),
        ),
        err(
            "c2_jku_attacker_host",
            ed_token_with_header(json!({"jku": "https://attacker.example/jwks.json"})),
            KeyMaterialInHeader("jku"),
        ),
        err(
            "c2_x5u_attacker_host",
            ed_token_with_header(json!({"x5u": "https://attacker.example/cert.pem"})),
            KeyMaterialInHeader("x5u"),
        ),
        err(
            "c3_x5c_self_signed",
            ed_token_with_header(json!({"x5c": ["MIIBszCCAVmgAwIBAgIUSelfSigned"]})),
            KeyMaterialInHeader("x5c"),
        ),
        err(
            "c3_x5c_empty_chain",
            ed_token_with_header(json!({"x5c": []})),
            KeyMaterialInHeader("x5c"),
        ),
        err(
            "c3_jwk_embedded_matching_key",
            ed_token_with_header(json!({"jwk": ed_jwk(&keys.ed)})),
            KeyMaterialInHeader("jwk"),
        ),
        err(
            "c3_jwk_embedded_without_kid",
            mint(
                &json!({"alg": "EdDSA", "jwk": ed_jwk(&keys.ed_other)}),
                &claims(),
                &Signer::Ed(&keys.ed_other),
            ),
            KeyMaterialInHeader("jwk"),
        ),
        err(
            "c3_jwk_null",
            ed_token_with_header(json!({"jwk": null})),
            KeyMaterialInHeader("jwk"),
        ),
        // 1C C4: kid is only a lookup in a fixed map.
        err(
            "c4_kid_path_traversal",
            mint(&header("EdDSA", "../../etc/passwd"), &claims(), &ed_signer),
            UnknownKey,
        ),
        err(
            "c4_kid_sql_injection",
            mint(&header("EdDSA", "' OR 1=1--"), &claims(), &ed_signer),
            UnknownKey,
        ),
        err(
            "c4_kid_10_kb",
            mint(
                &header("EdDSA", &"k".repeat(10 * 1024)),
                &claims(),
                &ed_signer,
            ),
            UnknownKey,
        )
        .settings(|s| s.max_token_bytes = 32 * 1024),
        err(
            "c4_kid_nul",
            mint(&header("EdDSA", "ed-1\u{0}"), &claims(), &ed_signer),
            UnknownKey,
        ),
        err(
            "c4_kid_case_variant",
            mint(&header("EdDSA", "ED-1"), &claims(), &ed_signer),
            UnknownKey,
        ),
        err(
            "c4_kid_empty",
            mint(&header("EdDSA", ""), &claims(), &ed_signer),
            UnknownKey,
        ),
        err(
            "c4_kid_number",
            ed_token_with_header(json!({"kid": 1})),
            BadHeader,
        ),
        err(
            "c4_kid_null",
            ed_token_with_header(json!({"kid": null})),
            BadHeader,
        ),
        err(
            "c4_kid_array",
            ed_token_with_header(json!({"kid": ["ed-1"]})),
            BadHeader,
        ),
        err(
            "c4_kid_object",
            ed_token_with_header(json!({"kid": {"id": "ed-1"}})),
            BadHeader,
        ),
        err(
            "c4_kid_missing",
            mint(&json!({"alg": "EdDSA"}), &claims(), &ed_signer),
            BadHeader,
        ),
        // Header extensions we do not understand.
        err(
            "crit_empty_list",
            ed_token_with_header(json!({"crit": []})),
            UnsupportedCrit,
        ),
        err(
            "crit_b64_unencoded_payload",
            ed_token_with_header(json!({"crit": ["b64"], "b64": false})),
            UnsupportedCrit,
        ),
        err(
            "crit_unknown_extension",
            ed_token_with_header(json!({"crit": ["exp"], "exp": 1})),
            UnsupportedCrit,
        ),
        err(
            "crit_not_a_list",
            ed_token_with_header(json!({"crit": "b64"})),
            UnsupportedCrit,
        ),
        // Signature.
        err(
            "wrong_key_same_kid_eddsa",
            mint(
                &header("EdDSA", "ed-1"),
                &claims(),
                &Signer::Ed(&keys.ed_other),
            ),
            BadSignature,
        ),
        err(
            "wrong_key_same_kid_es256",
            mint(
                &header("ES256", "es-1"),
                &claims(),
                &Signer::Es(&keys.es_other),
            ),
            BadSignature,
        ),
        err(
            "wrong_key_same_kid_hs256",
            mint(
                &header("HS256", "hs-1"),
                &claims(),
                &Signer::Hs(&derive("other", 32)),
            ),
            BadSignature,
        ),
        err(
            "tampered_payload_eddsa",
            with_payload(&token(EdDSA), &tampered),
            BadSignature,
        ),
        err(
            "tampered_payload_es256",
            with_payload(&token(ES256), &tampered),
            BadSignature,
        ),
        err(
            "tampered_payload_rs256",
            with_payload(&token(RS256), &tampered),
            BadSignature,
        ),
        err(
            "tampered_payload_hs256",
            with_payload(&token(HS256), &tampered),
            BadSignature,
        ),
        err(
            "tampered_header_eddsa",
            join(&[
                &b64(br#"{"alg":"EdDSA","kid":"ed-1","typ":"jwt"}"#),
                ed_payload,
                ed_signature,
            ]),
            BadSignature,
        ),
        err(
            "signature_from_other_token",
            join(&[
                ed_header,
                &segments(&token_with(EdDSA, &tampered))[1],
                ed_signature,
            ]),
            BadSignature,
        ),
        err(
            "es256_zero_signature",
            mint(
                &header("ES256", "es-1"),
                &claims(),
                &Signer::Raw(vec![0; 64]),
            ),
            BadSignature,
        ),
        err(
            "es256_der_signature_length",
            mint(
                &header("ES256", "es-1"),
                &claims(),
                &Signer::Raw(vec![0x30; 70]),
            ),
            BadSignature,
        ),
        err(
            "rs256_short_signature",
            mint(
                &header("RS256", "rs-1"),
                &claims(),
                &Signer::Raw(vec![1; 255]),
            ),
            BadSignature,
        ),
        err(
            "rs256_zero_signature",
            mint(
                &header("RS256", "rs-1"),
                &claims(),
                &Signer::Raw(vec![0; 256]),
            ),
            BadSignature,
        ),
        err(
            "hs256_truncated_mac",
            mint(
                &header("HS256", "hs-1"),
                &claims(),
                &Signer::Raw(sign(&signer(HS256), b"x")[..16].to_vec()),
            ),
            BadSignature,
        ),
        // The allow-list comes from settings.
        err("alg_not_in_allow_list", token(ES256), AlgorithmNotAllowed)
            .settings(|s| s.algorithms = vec![EdDSA]),
        err("hs256_not_in_allow_list", token(HS256), AlgorithmNotAllowed)
            .settings(|s| s.algorithms = vec![EdDSA, ES256, RS256]),
        err("empty_allow_list", token(EdDSA), AlgorithmNotAllowed)
            .settings(|s| s.algorithms.clear()),
        err(
            "unknown_kid",
            mint(&header("EdDSA", "ed-2"), &claims(), &ed_signer),
            UnknownKey,
        ),
        // 1D D1: exp with 60 s leeway.
        ok(
            "d1_exp_now_minus_59",
            ed_times(now_plus(-59), now_plus(-600), now_plus(-600)),
        ),
        err(
            "d1_exp_now_minus_61",
            ed_times(now_plus(-61), now_plus(-600), now_plus(-600)),
            Expired,
        ),
        ok(
            "d1_exp_exactly_at_leeway",
            ed_times(now_plus(-60), now_plus(-600), now_plus(-600)),
        ),
        err("d1_exp_zero", ed_times(Some(0), None, Some(0)), Expired),
        err(
            "d1_exp_negative",
            ed_times(Some(-1), None, Some(-100)),
            Expired,
        ),
        err(
            "d1_no_leeway_exp_now_minus_1",
            ed_times(now_plus(-1), now_plus(-600), now_plus(-600)),
            Expired,
        )
        .settings(|s| s.leeway_secs = 0),
        // 1D D2: exp is required.
        err(
            "d2_exp_missing",
            ed_times(None, now_plus(-10), now_plus(-10)),
            MissingExpiration,
        ),
        err(
            "d2_exp_missing_no_other_times",
            ed_times(None, None, None),
            MissingExpiration,
        ),
        err("d2_exp_null", ed_claim("exp", Some(Value::Null)), BadClaims),
        err(
            "d2_exp_string",
            ed_claim("exp", Some(json!((NOW + 300).to_string()))),
            BadClaims,
        ),
        err(
            "d2_exp_beyond_i64",
            ed_claim("exp", Some(json!(u64::MAX))),
            BadClaims,
        ),
        err(
            "d2_exp_beyond_calendar",
            ed_claim("exp", Some(json!(i64::MAX))),
            BadClaims,
        ),
        // 1D D4: nbf and iat with 60 s leeway.
        ok(
            "d4_nbf_now_plus_5",
            ed_times(now_plus(300), now_plus(5), None),
        ),
        err(
            "d4_nbf_now_plus_120",
            ed_times(now_plus(300), now_plus(120), None),
            NotYetValid,
        ),
        ok(
            "d4_nbf_exactly_at_leeway",
            ed_times(now_plus(300), now_plus(60), None),
        ),
        ok(
            "d4_iat_now_plus_5",
            ed_times(now_plus(300), None, now_plus(5)),
        ),
        err(
            "d4_iat_now_plus_120",
            ed_times(now_plus(300), None, now_plus(120)),
            NotYetValid,
        ),
        err(
            "d4_iat_far_future",
            ed_times(now_plus(300), None, Some(i64::from(i32::MAX) * 100)),
            NotYetValid,
        ),
        // 1D D5: bounded lifetime.
        err(
            "d5_lifetime_30_days",
            ed_times(now_plus(30 * 86_400 - 10), now_plus(-10), now_plus(-10)),
            LifetimeTooLong,
        ),
        ok(
            "d5_lifetime_exactly_max",
            ed_times(now_plus(3590), now_plus(-10), now_plus(-10)),
        ),
        err(
            "d5_lifetime_max_plus_1",
            ed_times(now_plus(3591), now_plus(-10), now_plus(-10)),
            LifetimeTooLong,
        ),
        err(
            "d5_lifetime_from_nbf_without_iat",
            ed_times(now_plus(30 * 86_400), now_plus(-10), None),
            LifetimeTooLong,
        ),
        ok(
            "d5_iat_takes_precedence_over_nbf",
            ed_times(now_plus(3000), now_plus(-3000), now_plus(-10)),
        ),
        err(
            "d5_no_iat_no_nbf_far_exp",
            ed_times(now_plus(30 * 86_400), None, None),
            LifetimeTooLong,
        ),
        ok(
            "d5_no_iat_no_nbf_within_max_plus_leeway",
            ed_times(now_plus(3660), None, None),
        ),
        err(
            "d5_no_iat_no_nbf_past_max_plus_leeway",
            ed_times(now_plus(3661), None, None),
            LifetimeTooLong,
        ),
        err(
            "d5_old_iat_long_lived",
            ed_times(now_plus(300), None, Some(0)),
            LifetimeTooLong,
        ),
        // 1D D6: exact issuer, exactly our audience, typ pinned.
        err(
            "d6_iss_wrong",
            ed_claim("iss", Some(json!("https://idp.example/"))),
            WrongIssuer,
        ),
        err(
            "d6_iss_trailing_slash",
            ed_claim("iss", Some(json!(format!("{ISSUER}/")))),
            WrongIssuer,
        ),
        err(
            "d6_iss_case_differs",
            ed_claim("iss", Some(json!(ISSUER.to_uppercase()))),
            WrongIssuer,
        ),
        err(
            "d6_iss_empty",
            ed_claim("iss", Some(json!(""))),
            WrongIssuer,
        ),
        err("d6_iss_missing", ed_claim("iss", None), BadClaims),
        err("d6_iss_number", ed_claim("iss", Some(json!(1))), BadClaims),
        err(
            "d6_aud_wrong",
            ed_claim("aud", Some(json!("other.test"))),
            WrongAudience,
        ),
        err("d6_aud_missing", ed_claim("aud", None), BadClaims),
        err(
            "d6_aud_empty_list",
            ed_claim("aud", Some(json!([]))),
            WrongAudience,
        ),
        err(
            "d6_aud_other_then_ours",
            ed_claim("aud", Some(json!(["other", AUDIENCE]))),
            WrongAudience,
        ),
        err(
            "d6_aud_ours_then_other",
            ed_claim("aud", Some(json!([AUDIENCE, "other"]))),
            WrongAudience,
        ),
        err("d6_aud_number", ed_claim("aud", Some(json!(5))), BadClaims),
        err(
            "d6_aud_prefix",
            ed_claim("aud", Some(json!(format!("{AUDIENCE}.evil")))),
            WrongAudience,
        ),
        err(
            "d6_typ_access_token",
            ed_token_with_header(json!({"typ": "at+jwt"})),
            BadHeader,
        ),
        err(
            "d6_typ_media_type",
            ed_token_with_header(json!({"typ": "application/jwt"})),
            BadHeader,
        ),
        err(
            "d6_typ_number",
            ed_token_with_header(json!({"typ": 1})),
            BadHeader,
        ),
        // 1E E4: bounded, well-typed access claim.
        err(
            "e4_access_object",
            ed_claim(
                "access",
                Some(json!({"type": "repository", "name": "a", "actions": ["pull"]})),
            ),
            BadClaims,
        ),
        err(
            "e4_actions_comma_string",
            ed_claim(
                "access",
                Some(json!([{"type": "repository", "name": "a", "actions": "pull,push"}])),
            ),
            BadClaims,
        ),
        err(
            "e4_nested_junk",
            ed_claim(
                "access",
                Some(json!([{
                    "type": "repository", "name": "a", "actions": ["pull"],
                    "extra": {"deep": [[[]]]},
                }])),
            ),
            BadClaims,
        ),
        err(
            "e4_name_number",
            ed_claim(
                "access",
                Some(json!([{"type": "repository", "name": 1, "actions": ["pull"]}])),
            ),
            BadClaims,
        ),
        err(
            "e4_action_number",
            ed_claim(
                "access",
                Some(json!([{"type": "repository", "name": "a", "actions": [1]}])),
            ),
            BadClaims,
        ),
        ok(
            "e4_64_entries",
            ed_claim("access", Some(access_entries(64, 1))),
        )
        .settings(|s| s.max_token_bytes = 64 * 1024),
        err(
            "e4_65_entries",
            ed_claim("access", Some(access_entries(65, 1))),
            BadClaims,
        )
        .settings(|s| s.max_token_bytes = 64 * 1024),
        ok(
            "e4_16_actions",
            ed_claim("access", Some(access_entries(1, 16))),
        ),
        err(
            "e4_17_actions",
            ed_claim("access", Some(access_entries(1, 17))),
            BadClaims,
        ),
        err(
            "e4_10000_entries",
            ed_claim("access", Some(access_entries(10_000, 1))),
            TooLarge,
        ),
        ok("e4_empty_access_list", ed_claim("access", Some(json!([])))),
        // Other claim types.
        err("sub_number", ed_claim("sub", Some(json!(42))), BadClaims),
        err(
            "nbf_string",
            ed_claim("nbf", Some(json!("soon"))),
            BadClaims,
        ),
    ]
}

#[test]
fn verify_table() {
    let keys = keys();
    let cases = cases();
    let mut names = std::collections::HashSet::new();
    let mut failures = Vec::new();
    for case in &cases {
        assert!(names.insert(case.name), "duplicate row name {}", case.name);
        let got = verify(&case.settings, &keys.ring, &case.token, NOW).map(|_| ());
        if got != case.want {
            failures.push(format!(
                "{}: want {:?}, got {:?}",
                case.name, case.want, got
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} rows failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn verified_carries_subject_access_and_expiry() {
    for alg in Algorithm::ALL {
        let verified = verify(&settings(), &keys().ring, &token(alg), NOW).unwrap();
        assert_eq!(
            verified,
            Verified {
                issued_at: Some(NOW - 10),
                subject: "alice".to_owned(),
                access: Some(vec![AccessEntry {
                    resource_type: "repository".to_owned(),
                    name: "team/app".to_owned(),
                    actions: vec!["pull".to_owned()],
                }]),
                expires_at: NOW + 300,
            },
            "{alg:?}"
        );
    }
    let anonymous = token_with(Algorithm::EdDSA, &unset(unset(claims(), "sub"), "access"));
    let verified = verify(&settings(), &keys().ring, &anonymous, NOW).unwrap();
    assert_eq!(verified.subject, "");
    assert_eq!(verified.access, None);
}

#[test]
fn empty_key_ring_knows_no_key() {
    let ring = KeyRing::from_specs(&[]).unwrap();
    assert!(ring.is_empty());
    assert_eq!(
        verify(&settings(), &ring, &token(Algorithm::EdDSA), NOW),
        Err(TokenError::UnknownKey)
    );
}

/// Every single-character change to a valid token is refused, and nothing panics.
#[test]
fn any_single_character_change_is_refused() {
    let original = token(Algorithm::HS256);
    let ring = &keys().ring;
    for index in 0..original.len() {
        for replacement in ['A', 'x', '0', '-', '_', '.', '=', ' ', '{'] {
            let mut mutated = original.clone().into_bytes();
            if mutated[index] == replacement as u8 {
                continue;
            }
            mutated[index] = replacement as u8;
            let mutated = String::from_utf8(mutated).unwrap();
            assert!(
                verify(&settings(), ring, &mutated, NOW).is_err(),
                "accepted {mutated}"
            );
        }
    }
    for len in 0..original.len() {
        assert!(verify(&settings(), ring, &original[..len], NOW).is_err());
    }
}

#[test]
fn reasons_are_stable_and_distinct() {
    use TokenError::*;
    let table = [
        (TooLarge, "too_large"),
        (BadFormat, "bad_format"),
        (BadHeader, "bad_header"),
        (AlgorithmNotAllowed, "algorithm_not_allowed"),
        (UnknownKey, "unknown_key"),
        (KeyMaterialInHeader("jku"), "key_material_in_header"),
        (UnsupportedCrit, "unsupported_crit"),
        (BadSignature, "bad_signature"),
        (BadClaims, "bad_claims"),
        (MissingExpiration, "missing_exp"),
        (Expired, "expired"),
        (NotYetValid, "not_yet_valid"),
        (WrongIssuer, "wrong_issuer"),
        (WrongAudience, "wrong_audience"),
        (LifetimeTooLong, "lifetime_too_long"),
    ];
    let mut seen = std::collections::HashSet::new();
    for (error, reason) in table {
        assert_eq!(error.reason(), reason, "{error:?}");
        assert!(seen.insert(reason));
    }
}

#[test]
fn algorithm_names_round_trip_exactly() {
    for alg in Algorithm::ALL {
        assert_eq!(Algorithm::from_name(alg.name()), Some(alg));
        assert_eq!(Algorithm::from_name(&alg.name().to_lowercase()), None);
    }
    assert_eq!(Algorithm::from_name("none"), None);
}

// ---------------------------------------------------------------------------------------
// Key ring.
// ---------------------------------------------------------------------------------------

struct KeyCase {
    name: &'static str,
    spec: KeySpec,
    want: Result<(), KeyError>,
}

fn key_ok(name: &'static str, spec: KeySpec) -> KeyCase {
    KeyCase {
        name,
        spec,
        want: Ok(()),
    }
}

fn key_err(name: &'static str, spec: KeySpec, error: KeyError) -> KeyCase {
    KeyCase {
        name,
        spec,
        want: Err(error),
    }
}

fn with_member(jwk: Value, member: &str, to: Value) -> Value {
    set(jwk, member, to)
}

/// A syntactically valid RSA modulus of `bits` bits (odd, top bit set). Parsing needs no
/// primes: these rows never sign.
fn rsa_modulus(bits: usize) -> String {
    let mut n = derive("modulus", bits.div_ceil(8));
    let top_bits = bits % 8;
    n[0] = if top_bits == 0 {
        n[0] | 0x80
    } else {
        (n[0] | (1 << (top_bits - 1))) & ((1 << top_bits) - 1)
    };
    *n.last_mut().unwrap() |= 1;
    b64(&n)
}

fn key_cases() -> Vec<KeyCase> {
    use Algorithm::*;
    let keys = keys();
    let ed = ed_jwk(&keys.ed);
    let es = es_jwk(&keys.es);
    let rsa = |bits: usize| json!({"kty": "RSA", "n": rsa_modulus(bits), "e": "AQAB"});
    let oct = |len: usize| json!({"kty": "oct", "k": b64(&derive("hmac", len))});
    let kid = |s: &str| s.to_owned();
    vec![
        key_ok("okp_ed25519", spec("k", EdDSA, ed.clone())),
        key_ok("ec_p256", spec("k", ES256, es.clone())),
        key_ok("rsa_2048_generated", spec("k", RS256, rsa_jwk(&keys.rsa))),
        key_ok("rsa_2048", spec("k", RS256, rsa(2048))),
        key_ok("rsa_3072", spec("k", RS256, rsa(3072))),
        key_ok("rsa_4096", spec("k", RS256, rsa(4096))),
        key_ok("oct_32_bytes", spec("k", HS256, oct(32))),
        key_ok("oct_64_bytes", spec("k", HS256, oct(64))),
        key_ok(
            "jwk_alg_and_use_consistent",
            spec(
                "k",
                EdDSA,
                with_member(
                    with_member(ed.clone(), "alg", json!("EdDSA")),
                    "use",
                    json!("sig"),
                ),
            ),
        ),
        key_err("empty_kid", spec("", EdDSA, ed.clone()), KeyError::EmptyKid),
        key_err(
            "kty_missing",
            spec("k", EdDSA, unset(ed.clone(), "kty")),
            KeyError::MissingMember {
                kid: kid("k"),
                member: "kty",
            },
        ),
        key_err(
            "kty_not_a_string",
            spec("k", EdDSA, with_member(ed.clone(), "kty", json!(1))),
            KeyError::MissingMember {
                kid: kid("k"),
                member: "kty",
            },
        ),
        key_err(
            "kty_unknown",
            spec("k", EdDSA, with_member(ed.clone(), "kty", json!("XYZ"))),
            KeyError::UnknownKeyType {
                kid: kid("k"),
                kty: "XYZ".to_owned(),
            },
        ),
        key_err(
            "kty_lowercase_rsa",
            spec("k", RS256, with_member(rsa(2048), "kty", json!("rsa"))),
            KeyError::UnknownKeyType {
                kid: kid("k"),
                kty: "rsa".to_owned(),
            },
        ),
        key_err(
            "okp_x25519",
            spec("k", EdDSA, with_member(ed.clone(), "crv", json!("X25519"))),
            KeyError::UnsupportedCurve {
                kid: kid("k"),
                crv: "X25519".to_owned(),
                expected: "Ed25519",
            },
        ),
        key_err(
            "okp_ed448",
            spec("k", EdDSA, with_member(ed.clone(), "crv", json!("Ed448"))),
            KeyError::UnsupportedCurve {
                kid: kid("k"),
                crv: "Ed448".to_owned(),
                expected: "Ed25519",
            },
        ),
        key_err(
            "ec_p384",
            spec("k", ES256, with_member(es.clone(), "crv", json!("P-384"))),
            KeyError::UnsupportedCurve {
                kid: kid("k"),
                crv: "P-384".to_owned(),
                expected: "P-256",
            },
        ),
        key_err(
            "ec_secp256k1",
            spec(
                "k",
                ES256,
                with_member(es.clone(), "crv", json!("secp256k1")),
            ),
            KeyError::UnsupportedCurve {
                kid: kid("k"),
                crv: "secp256k1".to_owned(),
                expected: "P-256",
            },
        ),
        key_err(
            "okp_x_padded",
            spec(
                "k",
                EdDSA,
                with_member(
                    ed.clone(),
                    "x",
                    json!(format!("{}=", ed["x"].as_str().unwrap())),
                ),
            ),
            KeyError::BadBase64 {
                kid: kid("k"),
                member: "x",
            },
        ),
        key_err(
            "okp_x_standard_alphabet",
            spec(
                "k",
                EdDSA,
                with_member(ed.clone(), "x", json!("+/+/".repeat(10) + "AAA")),
            ),
            KeyError::BadBase64 {
                kid: kid("k"),
                member: "x",
            },
        ),
        key_err(
            "okp_x_missing",
            spec("k", EdDSA, unset(ed.clone(), "x")),
            KeyError::MissingMember {
                kid: kid("k"),
                member: "x",
            },
        ),
        key_err(
            "okp_x_short",
            spec(
                "k",
                EdDSA,
                with_member(ed.clone(), "x", json!(b64(&[1; 31]))),
            ),
            KeyError::BadLength {
                kid: kid("k"),
                member: "x",
                expected: 32,
                actual: 31,
            },
        ),
        key_err(
            "okp_small_order_point",
            spec(
                "k",
                EdDSA,
                with_member(ed.clone(), "x", json!(b64(&[0; 32]))),
            ),
            KeyError::InvalidKey {
                kid: kid("k"),
                alg: EdDSA,
                reason: String::new(),
            },
        ),
        key_err(
            "ec_y_missing",
            spec("k", ES256, unset(es.clone(), "y")),
            KeyError::MissingMember {
                kid: kid("k"),
                member: "y",
            },
        ),
        key_err(
            "ec_point_not_on_curve",
            spec(
                "k",
                ES256,
                with_member(es.clone(), "y", json!(b64(&[1; 32]))),
            ),
            KeyError::InvalidKey {
                kid: kid("k"),
                alg: ES256,
                reason: String::new(),
            },
        ),
        key_err(
            "rsa_1024",
            spec("k", RS256, rsa(1024)),
            KeyError::RsaKeySize {
                kid: kid("k"),
                bits: 1024,
            },
        ),
        key_err(
            "rsa_2047",
            spec("k", RS256, rsa(2047)),
            KeyError::RsaKeySize {
                kid: kid("k"),
                bits: 2047,
            },
        ),
        key_err(
            "rsa_2056",
            spec("k", RS256, rsa(2056)),
            KeyError::RsaKeySize {
                kid: kid("k"),
                bits: 2056,
            },
        ),
        key_err(
            "rsa_8192",
            spec("k", RS256, rsa(8192)),
            KeyError::RsaKeySize {
                kid: kid("k"),
                bits: 8192,
            },
        ),
        key_err(
            "rsa_exponent_one",
            spec("k", RS256, with_member(rsa(2048), "e", json!("AQ"))),
            KeyError::InvalidKey {
                kid: kid("k"),
                alg: RS256,
                reason: String::new(),
            },
        ),
        key_err(
            "rsa_n_bad_base64",
            spec("k", RS256, with_member(rsa(2048), "n", json!("n=="))),
            KeyError::BadBase64 {
                kid: kid("k"),
                member: "n",
            },
        ),
        key_err(
            "rsa_private_exponent",
            spec("k", RS256, with_member(rsa(2048), "d", json!("AQAB"))),
            KeyError::PrivateKeyMaterial {
                kid: kid("k"),
                member: "d",
            },
        ),
        key_err(
            "okp_private_seed",
            spec(
                "k",
                EdDSA,
                with_member(ed.clone(), "d", json!(b64(&[1; 32]))),
            ),
            KeyError::PrivateKeyMaterial {
                kid: kid("k"),
                member: "d",
            },
        ),
        key_err(
            "ec_private_scalar",
            spec(
                "k",
                ES256,
                with_member(es.clone(), "d", json!(b64(&[1; 32]))),
            ),
            KeyError::PrivateKeyMaterial {
                kid: kid("k"),
                member: "d",
            },
        ),
        key_err(
            "oct_31_bytes",
            spec("k", HS256, oct(31)),
            KeyError::HmacKeyTooShort {
                kid: kid("k"),
                len: 31,
            },
        ),
        key_err(
            "oct_empty",
            spec("k", HS256, json!({"kty": "oct", "k": ""})),
            KeyError::HmacKeyTooShort {
                kid: kid("k"),
                len: 0,
            },
        ),
        key_err(
            "rsa_key_for_hs256",
            spec("k", HS256, rsa(2048)),
            KeyError::AlgorithmMismatch {
                kid: kid("k"),
                kty: "RSA".to_owned(),
                alg: HS256,
            },
        ),
        key_err(
            "oct_key_for_rs256",
            spec("k", RS256, oct(32)),
            KeyError::AlgorithmMismatch {
                kid: kid("k"),
                kty: "oct".to_owned(),
                alg: RS256,
            },
        ),
        key_err(
            "ec_key_for_eddsa",
            spec("k", EdDSA, es.clone()),
            KeyError::AlgorithmMismatch {
                kid: kid("k"),
                kty: "EC".to_owned(),
                alg: EdDSA,
            },
        ),
        key_err(
            "jwk_alg_contradicts_spec",
            spec("k", EdDSA, with_member(ed.clone(), "alg", json!("HS256"))),
            KeyError::Inconsistent {
                kid: kid("k"),
                member: "alg",
            },
        ),
        key_err(
            "jwk_kid_contradicts_spec",
            spec("k", EdDSA, with_member(ed.clone(), "kid", json!("other"))),
            KeyError::Inconsistent {
                kid: kid("k"),
                member: "kid",
            },
        ),
        key_err(
            "jwk_use_enc",
            spec("k", EdDSA, with_member(ed, "use", json!("enc"))),
            KeyError::Inconsistent {
                kid: kid("k"),
                member: "use",
            },
        ),
    ]
}

#[test]
fn key_ring_from_specs_table() {
    let mut failures = Vec::new();
    for case in key_cases() {
        let got = KeyRing::from_specs(std::slice::from_ref(&case.spec))
            .map(|ring| assert_eq!(ring.len(), 1, "{}", case.name))
            .map_err(|error| match error {
                // The reason text comes from the crypto crates; the variant is the contract.
                KeyError::InvalidKey { kid, alg, .. } => KeyError::InvalidKey {
                    kid,
                    alg,
                    reason: String::new(),
                },
                other => other,
            });
        if got != case.want {
            failures.push(format!(
                "{}: want {:?}, got {:?}",
                case.name, case.want, got
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} rows failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn key_errors_name_the_kid() {
    let error = KeyRing::from_specs(&[spec(
        "build-key",
        Algorithm::HS256,
        json!({"kty": "oct", "k": b64(&[1; 8])}),
    )])
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "key \"build-key\": HMAC key is 8 bytes; at least 32 bytes are required"
    );
}

#[test]
fn key_ring_rejects_duplicate_kids() {
    let keys = keys();
    let duplicate = vec![keys.specs[0].clone(), keys.specs[0].clone()];
    assert_eq!(
        KeyRing::from_specs(&duplicate),
        Err(KeyError::DuplicateKid {
            kid: "ed-1".to_owned()
        })
    );
}

#[test]
fn key_ring_merge() {
    let keys = keys();
    let (left, right) = keys.specs.split_at(2);
    let left = KeyRing::from_specs(left).unwrap();
    let right = KeyRing::from_specs(right).unwrap();
    let merged = left.merge_preferring_self(&right);
    assert_eq!(merged.len(), 4);
    assert_eq!(merged, keys.ring, "merge equals the ring built at once");
    for alg in Algorithm::ALL {
        assert!(
            verify(&settings(), &merged, &token(alg), NOW).is_ok(),
            "{alg:?}"
        );
    }
    assert_eq!(
        merged.merge_preferring_self(&right),
        merged,
        "kids already held are kept, not replaced"
    );
    assert_eq!(left.merge_preferring_self(&KeyRing::default()), left);
    // A colliding kid keeps this ring's key: the other ring's token no longer verifies.
    let mut impostor = keys.specs[2].clone();
    impostor.kid = keys.specs[0].kid.clone();
    let impostor = KeyRing::from_specs(&[impostor]).unwrap();
    assert_eq!(left.merge_preferring_self(&impostor), left);
}

#[test]
fn key_ring_equality_follows_the_specs() {
    let keys = keys();
    let mut reversed = keys.specs.clone();
    reversed.reverse();
    assert_eq!(
        KeyRing::from_specs(&reversed).unwrap(),
        keys.ring,
        "order does not matter"
    );
    let fewer = KeyRing::from_specs(&keys.specs[1..]).unwrap();
    assert_ne!(fewer, keys.ring);
    let mut renamed = keys.specs.clone();
    renamed[0].kid = "ed-2".to_owned();
    assert_ne!(KeyRing::from_specs(&renamed).unwrap(), keys.ring);
    assert_eq!(keys.ring.len(), 4);
    let debug = format!("{:?}", keys.ring);
    assert!(
        debug.contains("hs-1") && !debug.contains(&b64(&keys.hs)),
        "{debug}"
    );
}

#[test]
fn key_spec_wire_form_round_trips() {
    let keys = keys();
    let wire = serde_json::to_string(&keys.specs).unwrap();
    let back: Vec<KeySpec> = serde_json::from_str(&wire).unwrap();
    assert_eq!(KeyRing::from_specs(&back).unwrap(), keys.ring);
}

// ---------------------------------------------------------------------------------------
// Token cache.
// ---------------------------------------------------------------------------------------

fn verified(subject: &str, expires_at: u64) -> Verified {
    Verified {
        issued_at: None,
        subject: subject.to_owned(),
        access: None,
        expires_at,
    }
}

#[test]
fn cache_hit_and_miss() {
    let mut cache = TokenCache::new(4);
    assert!(cache.is_empty());
    assert_eq!(cache.get("a.b.c", NOW), None, "miss on an empty cache");
    cache.insert("a.b.c", verified("alice", NOW + 60), NOW);
    assert_eq!(
        cache.get("a.b.c", NOW),
        Some(&verified("alice", NOW + 60)),
        "hit"
    );
    assert_eq!(cache.get("a.b.d", NOW), None, "another token misses");
    assert_eq!(cache.len(), 1);
}

#[test]
fn cache_entry_expires_at_exp() {
    let mut cache = TokenCache::new(4);
    cache.insert("t", verified("alice", NOW + 60), NOW);
    assert!(
        cache.get("t", NOW + 60).is_some(),
        "valid through expires_at"
    );
    assert_eq!(cache.get("t", NOW + 61), None, "past expires_at is a miss");
}

#[test]
fn cache_does_not_store_expired_or_with_zero_capacity() {
    let mut cache = TokenCache::new(4);
    cache.insert("t", verified("alice", NOW - 1), NOW);
    assert_eq!(cache.len(), 0);
    let mut disabled = TokenCache::new(0);
    disabled.insert("t", verified("alice", NOW + 60), NOW);
    assert_eq!(disabled.len(), 0);
    assert_eq!(disabled.get("t", NOW), None);
}

#[test]
fn cache_reinsert_replaces_without_growing() {
    let mut cache = TokenCache::new(2);
    cache.insert("t", verified("alice", NOW + 60), NOW);
    cache.insert("t", verified("alice", NOW + 120), NOW);
    assert_eq!(cache.len(), 1);
    assert_eq!(cache.get("t", NOW).unwrap().expires_at, NOW + 120);
}

#[test]
fn cache_evicts_in_insertion_order_when_full() {
    let mut cache = TokenCache::new(3);
    for name in ["a", "b", "c"] {
        cache.insert(name, verified(name, NOW + 60), NOW);
    }
    assert!(
        cache.get("a", NOW).is_some(),
        "a hit does not reorder (FIFO, not LRU)"
    );
    cache.insert("d", verified("d", NOW + 60), NOW);
    assert_eq!(cache.len(), 3);
    assert_eq!(cache.get("a", NOW), None, "oldest evicted");
    for name in ["b", "c", "d"] {
        assert!(cache.get(name, NOW).is_some(), "{name}");
    }
}

#[test]
fn cache_drops_expired_entries_before_evicting_live_ones() {
    let mut cache = TokenCache::new(3);
    cache.insert("old", verified("old", NOW + 60), NOW);
    cache.insert("short", verified("short", NOW + 10), NOW);
    cache.insert("long", verified("long", NOW + 600), NOW);
    let later = NOW + 30;
    cache.insert("new", verified("new", NOW + 600), later);
    assert_eq!(cache.len(), 3);
    assert_eq!(
        cache.get("short", later),
        None,
        "the expired entry made room"
    );
    for name in ["old", "long", "new"] {
        assert!(cache.get(name, later).is_some(), "{name} kept");
    }
}

#[test]
fn cache_stays_bounded() {
    let capacity = 16;
    let mut cache = TokenCache::new(capacity);
    for i in 0..1000_u64 {
        let now = NOW + i / 10;
        let token = format!("token-{i}");
        cache.insert(&token, verified("u", now + 5 + i % 7), now);
        // Expire some entries through get as well, leaving stale order slots behind.
        if i % 3 == 0 {
            let _ = cache.get(&format!("token-{}", i / 2), now);
        }
        assert!(cache.len() <= capacity, "len {} at {i}", cache.len());
        assert!(
            cache.order.len() <= 2 * capacity + 1,
            "order {} at {i}",
            cache.order.len()
        );
    }
    assert!(
        cache.get("token-999", NOW + 99).is_some(),
        "the newest survives"
    );
}

#[test]
fn cache_clear() {
    let mut cache = TokenCache::new(4);
    cache.insert("t", verified("alice", NOW + 60), NOW);
    cache.clear();
    assert_eq!(cache.len(), 0);
    assert_eq!(cache.get("t", NOW), None);
}

#[test]
fn cache_round_trip_with_verify() {
    let mut cache = TokenCache::new(8);
    let token = token(Algorithm::EdDSA);
    assert_eq!(cache.get(&token, NOW), None);
    let verified = verify(&settings(), &keys().ring, &token, NOW).unwrap();
    cache.insert(&token, verified.clone(), NOW);
    assert_eq!(cache.get(&token, NOW), Some(&verified));
    assert_eq!(cache.get(&token, NOW + 301), None, "gone after exp");
}

// ---------------------------------------------------------------------------------------
// Signatures checked by the host (crate::signature).
// ---------------------------------------------------------------------------------------

/// What a host was sent: algorithm, DER key, signature as sent, signed text.
type Sent = (Algorithm, Vec<u8>, Vec<u8>, Vec<u8>);

/// A host that answers `answer` for the algorithms it `takes`, recording what it was sent.
#[derive(Debug)]
struct RecordingHost {
    takes: Vec<Algorithm>,
    answer: Option<bool>,
    sent: Vec<Sent>,
}

impl RecordingHost {
    fn new(takes: &[Algorithm], answer: Option<bool>) -> RecordingHost {
        RecordingHost {
            takes: takes.to_vec(),
            answer,
            sent: Vec::new(),
        }
    }
}

impl SignatureHost for RecordingHost {
    fn handles(&self, alg: Algorithm) -> bool {
        self.takes.contains(&alg)
    }

    fn check(&mut self, check: &HostCheck<'_>) -> Option<bool> {
        self.sent.push((
            check.alg,
            check.public_key.to_vec(),
            check.signature.to_vec(),
            check.text.to_vec(),
        ));
        self.answer
    }
}

const ASYMMETRIC: [Algorithm; 3] = [Algorithm::EdDSA, Algorithm::ES256, Algorithm::RS256];

fn token_for(alg: Algorithm) -> String {
    mint(&header(alg.name(), kid(alg)), &claims(), &signer(alg))
}

#[test]
fn a_host_that_takes_the_algorithm_gets_the_key_signature_and_signing_input_and_decides() {
    let ring = &keys().ring;
    for alg in ASYMMETRIC {
        let token = token_for(alg);
        let mut host = RecordingHost::new(&ASYMMETRIC, Some(true));
        let (result, checked) = verify_using(&settings(), ring, &token, NOW, &mut host);
        assert_eq!(result.unwrap().subject, "alice", "{alg:?}");
        assert_eq!(checked, Some((alg, Path::Host)));
        let [(sent_alg, key, signature, text)] = host.sent.as_slice() else {
            panic!("{alg:?}: one check expected, got {:?}", host.sent.len());
        };
        assert_eq!(*sent_alg, alg);
        let expected_key = ring.keys.get(kid(alg)).unwrap().public_key_der().unwrap();
        assert_eq!(key.as_slice(), expected_key);
        let (input, jws_signature) = token.rsplit_once('.').unwrap();
        assert_eq!(text.as_slice(), input.as_bytes());
        let jws_signature = URL_SAFE_NO_PAD.decode(jws_signature).unwrap();
        if alg == Algorithm::ES256 {
            // DER SEQUENCE of two INTEGERs, not JWS's 64 bytes.
            assert_eq!(signature.first(), Some(&0x30), "{alg:?}");
            assert_ne!(signature, &jws_signature);
        } else {
            assert_eq!(signature, &jws_signature, "{alg:?}");
        }

        // The host's "no" stands, even for a signature Rust would accept.
        let mut refusing = RecordingHost::new(&ASYMMETRIC, Some(false));
        let (result, checked) = verify_using(&settings(), ring, &token, NOW, &mut refusing);
        assert_eq!(result.unwrap_err(), TokenError::BadSignature, "{alg:?}");
        assert_eq!(checked, Some((alg, Path::Host)));
    }
}

#[test]
fn a_host_that_cannot_answer_or_does_not_take_the_algorithm_leaves_the_check_to_rust() {
    let ring = &keys().ring;
    for alg in Algorithm::ALL {
        let token = token_for(alg);
        // One signature character changed (not the last: its spare bits must stay zero).
        let at = token.len() - 5;
        let changed = if &token[at..=at] == "A" { "B" } else { "A" };
        let tampered = format!("{}{changed}{}", &token[..at], &token[at + 1..]);
        for takes in [&ASYMMETRIC[..], &[]] {
            let mut host = RecordingHost::new(takes, None);
            let (result, checked) = verify_using(&settings(), ring, &token, NOW, &mut host);
            assert!(result.is_ok(), "{alg:?}: {result:?}");
            assert_eq!(checked, Some((alg, Path::Wasm)));
            let (result, _) = verify_using(&settings(), ring, &tampered, NOW, &mut host);
            assert_eq!(result.unwrap_err(), TokenError::BadSignature, "{alg:?}");
            if takes.is_empty() || alg == Algorithm::HS256 {
                // Never asked: not taken, or an HMAC secret (no public key to send).
                assert!(host.sent.is_empty(), "{alg:?}");
            }
        }
    }
}

#[test]
fn a_hosts_yes_rescues_nothing_but_the_signature() {
    let ring = &keys().ring;
    let mut host = RecordingHost::new(&ASYMMETRIC, Some(true));
    let expired = mint(
        &header("ES256", "es-1"),
        &set(claims(), "exp", json!(NOW - 3600)),
        &signer(Algorithm::ES256),
    );
    let (result, checked) = verify_using(&settings(), ring, &expired, NOW, &mut host);
    assert_eq!(result.unwrap_err(), TokenError::Expired);
    assert_eq!(checked, Some((Algorithm::ES256, Path::Host)));
    // An EdDSA token under an ES256 kid never reaches the host.
    let crossed = mint(
        &header("EdDSA", "es-1"),
        &claims(),
        &signer(Algorithm::EdDSA),
    );
    let (result, checked) = verify_using(&settings(), ring, &crossed, NOW, &mut host);
    assert_eq!(result.unwrap_err(), TokenError::AlgorithmNotAllowed);
    assert_eq!(checked, None);
    // An ES256 signature of the wrong length is refused without asking.
    let short = mint(
        &header("ES256", "es-1"),
        &claims(),
        &Signer::Raw(vec![7; 63]),
    );
    let (result, checked) = verify_using(&settings(), ring, &short, NOW, &mut host);
    assert_eq!(result.unwrap_err(), TokenError::BadSignature);
    assert_eq!(checked, Some((Algorithm::ES256, Path::Host)));
    assert_eq!(
        host.sent.len(),
        1,
        "only the expired token's signature was sent"
    );
}

#[test]
fn the_probe_signatures_verify_in_rust_and_the_tampered_text_does_not() {
    for (alg, jwk, signature) in crate::signature::PROBES {
        let spec: KeySpec = serde_json::from_str(jwk).unwrap();
        let key = parse_key(&spec).unwrap();
        let signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
        let probe = crate::signature::Probe::all()
            .into_iter()
            .find(|p| p.alg == alg)
            .unwrap();
        let genuine = probe.genuine().unwrap();
        let tampered = probe.tampered().unwrap();
        let rust = |text: &[u8]| key.verifies(&mut RustOnly, text, &signature);
        assert_eq!(rust(genuine.text), (true, Path::Wasm), "{alg:?}");
        assert_eq!(rust(tampered.text), (false, Path::Wasm), "{alg:?}");
    }
}
