//! The host's wire forms: DER keys and signatures against what OpenSSL produced for the probe
//! keys (`openssl pkey -pubout -outform DER`, `openssl dgst -sha256 -sign`), the protobuf
//! messages byte for byte, and the probe's verdict on honest and dishonest hosts.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::*;

fn b64(text: &str) -> Vec<u8> {
    STANDARD.decode(text).unwrap()
}

/// OpenSSL's SubjectPublicKeyInfo of each probe key.
const OPENSSL_SPKI: [(Algorithm, &str); 3] = [
    (
        Algorithm::EdDSA,
        "MCowBQYDK2VwAyEAHzwvHykIWSK2cj2+YE8026rpeZ0uOzEAaK7vk5NIllc=",
    ),
    (
        Algorithm::ES256,
        "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAERNGoad8zkTZnXyrS4YOGd/j3Dsp+Jvgnp8rAd0MEVDDXjxv1sG3m+ZGVPV2tfQNvlkdcL0LnFVWTAw0iggwPQA==",
    ),
    (
        Algorithm::RS256,
        "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA4pE4LOqDwGyLr7delI9Hy9rp5k8JtOiRsImHHj0KwxNpQwV1xE1I0q37KpATGb0zgHO7cnWbNPu+vNQcdVR0A79VzBhABbGYoMgYvUymiKvBgcFY0aCCC0eNltUYvpO/VmjvjXhIyCAi8oPlxA3SGWqNxvWwFZ2RnCV5zXPHXB1VNbImEx67wIwWItqfWTdBmUbTkoBcF3UM3J9mT+6pW2ZRsqN7iiEYrUXuYkpfytcaalxD5Pz12SjzBAt+XpxlmqkTgMf+TH7ib6JSyu6BVu2U6B6hl5E1epv6pIMQoH7+az1jiPijx65VyM5DF2AxnHCqoMqR9GfnApMbQLRUhwIDAQAB",
    ),
];

/// OpenSSL's DER form of the ES256 probe signature.
const OPENSSL_ECDSA_DER: &str =
    "MEUCIAjk/5nKEYMsq/Pq5j6Dny3+Ni9QlIGFlQp/Z+Ph+TbQAiEAgRr7sjxkIo2c4t4CbIc7AMvglKzPInpwn8z6xGLn61A=";

#[test]
fn every_asymmetric_algorithm_has_a_probe_whose_key_is_der_exactly_as_openssl_writes_it() {
    let probes = Probe::all();
    assert_eq!(
        probes.iter().map(|p| p.alg).collect::<Vec<_>>(),
        [Algorithm::EdDSA, Algorithm::ES256, Algorithm::RS256]
    );
    for (alg, spki) in OPENSSL_SPKI {
        let probe = probes.iter().find(|p| p.alg == alg).unwrap();
        assert_eq!(probe.public_key, b64(spki), "{alg:?}");
    }
}

#[test]
fn an_es256_signature_goes_to_the_host_as_openssl_der_and_others_unchanged() {
    let probes = Probe::all();
    let es = probes.iter().find(|p| p.alg == Algorithm::ES256).unwrap();
    let check = es.genuine().unwrap();
    assert_eq!(check.signature.as_ref(), b64(OPENSSL_ECDSA_DER));
    assert_eq!(check.text, PROBE_TEXT);
    for probe in probes.iter().filter(|p| p.alg != Algorithm::ES256) {
        assert_eq!(probe.genuine().unwrap().signature.as_ref(), probe.signature);
    }
}

#[test]
fn ecdsa_der_is_minimal_and_keeps_integers_positive() {
    // r with its top bit set gets a zero byte; s with leading zeros loses them.
    let mut raw = vec![0x80; 32];
    raw.extend([0; 31]);
    raw.push(0x05);
    let der = ecdsa_der(&raw, 32).unwrap();
    let mut expected = vec![0x30, 38, 0x02, 33, 0x00];
    expected.extend([0x80; 32]);
    expected.extend([0x02, 1, 0x05]);
    assert_eq!(der, expected);
    // Zero is one zero byte, not an empty integer.
    assert_eq!(
        ecdsa_der(&[0; 64], 32).unwrap(),
        [0x30, 6, 0x02, 1, 0, 0x02, 1, 0]
    );
    for len in [0, 63, 65, 128] {
        assert_eq!(ecdsa_der(&vec![1; len], 32), None, "{len} bytes");
        assert_eq!(
            HostCheck::new(Algorithm::ES256, b"key", &vec![1; len], b"t"),
            None
        );
    }
}

#[test]
fn der_lengths_use_the_long_form_from_128_bytes() {
    let mut out = Vec::new();
    der(&mut out, SEQUENCE, &[7; 127]);
    assert_eq!(out.get(..2), Some(&[0x30, 127][..]));
    out.clear();
    der(&mut out, SEQUENCE, &[7; 128]);
    assert_eq!(out.get(..3), Some(&[0x30, 0x81, 128][..]));
    out.clear();
    der(&mut out, SEQUENCE, &[7; 270]);
    assert_eq!(out.get(..4), Some(&[0x30, 0x82, 0x01, 0x0e][..]));
    assert_eq!(out.len(), 4 + 270);
}

#[test]
fn the_arguments_are_the_verify_signature_arguments_message_byte_for_byte() {
    let check = HostCheck {
        alg: Algorithm::RS256,
        public_key: &[0xaa; 200],
        signature: Cow::Borrowed(&[0xbb, 0xcc]),
        text: b"h.p",
    };
    let mut expected = vec![0x0a, 6];
    expected.extend(b"sha256");
    expected.extend([0x12, 0xc8, 0x01]); // field 2, length 200 as a two-byte varint
    expected.extend([0xaa; 200]);
    expected.extend([0x1a, 2, 0xbb, 0xcc]);
    expected.extend([0x22, 3]);
    expected.extend(b"h.p");
    assert_eq!(check.arguments(), expected);
}

#[test]
fn the_result_decodes_true_false_and_refuses_what_is_not_the_message() {
    assert_eq!(decode_result(&[0x08, 0x01, 0x12, 0x00]), Some(true));
    assert_eq!(decode_result(&[0x08, 0x01]), Some(true));
    // proto3 leaves a false bool out: an empty message, or only an error.
    assert_eq!(decode_result(&[]), Some(false));
    let mut refused = vec![0x12, 27];
    refused.extend(b"Failed to verify digest. 0\n");
    assert_eq!(decode_result(&refused), Some(false));
    // Unknown varint and length-delimited fields are skipped.
    assert_eq!(
        decode_result(&[0x18, 0x96, 0x01, 0x22, 1, 9, 0x08, 1]),
        Some(true)
    );
    for broken in [
        &[0x08][..],             // value missing
        &[0x12, 5, b'x'][..],    // length past the end
        &[0x0d, 0, 0, 0, 0][..], // fixed32: not in this message
        &[
            0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ][..],
    ] {
        assert_eq!(decode_result(broken), None, "{broken:?}");
    }
}

/// A host that answers from a fixed rule, counting calls.
struct Fake(fn(&HostCheck<'_>) -> Option<bool>);

#[test]
fn only_a_host_that_accepts_the_genuine_and_refuses_the_tampered_passes_the_probe() {
    let honest = Fake(|check| Some(check.text == PROBE_TEXT));
    let yes_man = Fake(|_| Some(true));
    let absent = Fake(|_| None);
    let refuses_all = Fake(|_| Some(false));
    for probe in Probe::all() {
        let passes = |fake: &Fake| probe.passes(&mut |check| (fake.0)(check));
        assert!(passes(&honest), "{:?}", probe.alg);
        assert!(!passes(&yes_man), "{:?}", probe.alg);
        assert!(!passes(&absent), "{:?}", probe.alg);
        assert!(!passes(&refuses_all), "{:?}", probe.alg);
    }
}

#[test]
fn rust_only_takes_no_algorithm() {
    for alg in Algorithm::ALL {
        assert!(!RustOnly.handles(alg));
    }
}
