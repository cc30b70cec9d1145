//! JWT access tokens (RFC 9068) checked against the issuer's keys: the header first (shape,
//! algorithm, type, key id), then the signature and the claims.
//!
//! Pure: no I/O and no clock but the system's. Every refusal is a short fixed text, safe to send
//! back and to log: none of them quotes the token or a claim.

use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::Deserialize;

use super::crypto::ALLOWED;
use super::grant::{Access, Grant};
use super::settings::ScopeNames;

/// Longest access token read at all; a longer one is refused before any parsing.
pub(crate) const MAX_TOKEN_BYTES: usize = 8192;

/// What a token must say, from the settings.
pub(crate) struct Expect<'a> {
    pub issuer: &'a str,
    pub audience: &'a str,
    pub leeway_secs: u64,
    pub scopes: &'a ScopeNames,
}

/// Why a JWT was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Not valid; the text says why (short, fixed).
    Invalid(&'static str),
    /// Signed with a key id the key set does not hold: a refetch may find it.
    UnknownKey,
}

/// The header of a JWT-shaped token, checked.
#[derive(Debug)]
pub(crate) struct Checked {
    alg: Algorithm,
    kid: String,
}

/// True when `token` has the shape of a JWS compact serialization (three parts). Anything else
/// is an opaque token (for introspection).
pub(crate) fn is_jwt(token: &str) -> bool {
    token.bytes().filter(|b| *b == b'.').count() == 2
}

/// Reads and checks the header: an accepted algorithm, an access-token type, a key id.
pub(crate) fn check_header(token: &str) -> Result<Checked, &'static str> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err("the token is too long");
    }
    // `none` and unknown names fail here: jsonwebtoken's Algorithm has no such variant.
    let header = decode_header(token).map_err(|_| "the token's header cannot be read")?;
    if !ALLOWED.contains(&header.alg) {
        return Err("the token's algorithm is not accepted (RS256, PS256, ES256 or EdDSA)");
    }
    // RFC 9068 says `at+jwt` (media types compare case-insensitively, `application/` optional);
    // many issuers write `JWT`, and some (Okta) none at all: both are accepted, anything else
    // (an ID token's or logout token's type) is not.
    if let Some(typ) = &header.typ {
        let typ = typ.to_ascii_lowercase();
        let typ = typ.strip_prefix("application/").unwrap_or(&typ);
        if typ != "at+jwt" && typ != "jwt" {
            return Err("the token's type (typ) is not an access token's");
        }
    }
    let kid = header.kid.ok_or("the token names no key (kid)")?;
    Ok(Checked {
        alg: header.alg,
        kid,
    })
}

#[derive(Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    #[serde(default)]
    exp: Option<f64>,
    /// RFC 9068 / RFC 8693: space-separated.
    #[serde(default)]
    scope: Option<String>,
    /// Okta (an array) and Entra ID (a space-separated string).
    #[serde(default)]
    scp: Option<ScopeList>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ScopeList {
    Text(String),
    List(Vec<String>),
}

/// No key of the token's kid fits its algorithm.
const UNFIT: &str = "the token's key does not fit its algorithm";
/// A key fits, and the signature does not verify with it.
const BAD_SIGNATURE: &str = "the token's signature does not verify";

/// The key for `alg` in `jwk`: a signing key of the right type, whose own `alg` (if it names one)
/// is the token's.
fn key_for(jwk: &Jwk, alg: Algorithm) -> Result<DecodingKey, &'static str> {
    if jwk
        .common
        .public_key_use
        .as_ref()
        .is_some_and(|u| *u != PublicKeyUse::Signature)
    {
        return Err(UNFIT);
    }
    if let Some(named) = jwk.common.key_algorithm {
        let wanted = match alg {
            Algorithm::RS256 => KeyAlgorithm::RS256,
            Algorithm::PS256 => KeyAlgorithm::PS256,
            Algorithm::ES256 => KeyAlgorithm::ES256,
            Algorithm::EdDSA => KeyAlgorithm::EdDSA,
            _ => return Err(UNFIT),
        };
        if named != wanted {
            return Err(UNFIT);
        }
    }
    let fits = match (&jwk.algorithm, alg) {
        (AlgorithmParameters::RSA(_), Algorithm::RS256 | Algorithm::PS256) => true,
        (AlgorithmParameters::EllipticCurve(p), Algorithm::ES256) => p.curve == EllipticCurve::P256,
        (AlgorithmParameters::OctetKeyPair(p), Algorithm::EdDSA) => {
            p.curve == EllipticCurve::Ed25519
        }
        // Symmetric ("oct") keys never: a public key set has no business holding one.
        _ => false,
    };
    if !fits {
        return Err(UNFIT);
    }
    DecodingKey::from_jwk(jwk).map_err(|_| UNFIT)
}

/// Checks the signature and the claims of a token whose header passed [`check_header`].
///
/// Every key of the set with the token's key id is tried, not only the first: a set may hold an
/// encryption key and a signing key under one `kid` (RFC 7517 only asks kids to differ between
/// keys of one type), and the one that fits the algorithm and verifies is the one.
pub(crate) fn verify(
    token: &str,
    header: &Checked,
    keys: &JwkSet,
    expect: &Expect<'_>,
) -> Result<Grant, Verdict> {
    use jsonwebtoken::errors::ErrorKind as K;
    let mut named = keys
        .keys
        .iter()
        .filter(|k| k.common.key_id.as_deref() == Some(header.kid.as_str()))
        .peekable();
    if named.peek().is_none() {
        return Err(Verdict::UnknownKey);
    }
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[expect.issuer]);
    validation.set_audience(&[expect.audience]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.leeway = expect.leeway_secs;
    let mut refusal = UNFIT;
    let mut verified = None;
    for jwk in named {
        // Not a signing key for this algorithm (an encryption key, another type): the next one.
        let Ok(key) = key_for(jwk, header.alg) else {
            continue;
        };
        match decode::<Claims>(token, &key, &validation) {
            Ok(data) => {
                verified = Some(data);
                break;
            }
            // Not this key: another one with this kid may have signed it.
            Err(e) if matches!(e.kind(), K::InvalidSignature) => refusal = BAD_SIGNATURE,
            Err(e) if matches!(e.kind(), K::InvalidAlgorithm | K::InvalidKeyFormat) => {}
            // The signature verified (claims are read after it): what they say stands.
            Err(e) => {
                return Err(Verdict::Invalid(match e.kind() {
                    K::ExpiredSignature => "the token has expired",
                    K::ImmatureSignature => "the token is not valid yet (nbf)",
                    K::InvalidAudience => "the token is not for this resource (aud)",
                    K::InvalidIssuer => "the token is from another issuer (iss)",
                    K::MissingRequiredClaim(_) => {
                        "the token lacks a required claim (exp, iss, aud, sub)"
                    }
                    K::InvalidClaimFormat(_) => "a claim of the token has the wrong type",
                    _ => "the token cannot be read",
                }));
            }
        }
    }
    let data = verified.ok_or(Verdict::Invalid(refusal))?;
    let claims = data.claims;
    if claims.sub.is_empty() {
        return Err(Verdict::Invalid("the token's subject (sub) is empty"));
    }
    let mut scopes: Vec<&str> = claims
        .scope
        .as_deref()
        .unwrap_or_default()
        .split(' ')
        .collect();
    match &claims.scp {
        Some(ScopeList::Text(s)) => scopes.extend(s.split(' ')),
        Some(ScopeList::List(list)) => scopes.extend(list.iter().map(String::as_str)),
        None => {}
    }
    let access = Access::from_scopes(scopes, expect.scopes);
    Ok(Grant {
        issuer: claims.iss,
        subject: claims.sub,
        access,
        expires_at: claims.exp.filter(|e| *e >= 0.0).map(|e| e as u64),
    })
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{TestKey, mint, now};
    use super::*;
    use serde_json::json;

    const ISS: &str = "https://auth.example.com";
    const AUD: &str = "https://mcp.example.com/mcp";

    fn names() -> ScopeNames {
        ScopeNames {
            read: "payment_links:read".into(),
            write: "payment_links:write".into(),
        }
    }

    fn check(token: &str, keys: &JwkSet, leeway: u64) -> Result<Grant, Verdict> {
        assert!(super::super::crypto::install());
        let names = names();
        let expect = Expect {
            issuer: ISS,
            audience: AUD,
            leeway_secs: leeway,
            scopes: &names,
        };
        let header = check_header(token).map_err(Verdict::Invalid)?;
        verify(token, &header, keys, &expect)
    }

    fn claims() -> serde_json::Value {
        json!({"iss": ISS, "sub": "alice", "aud": AUD, "exp": now() + 300,
               "iat": now(), "scope": "payment_links:read"})
    }

    fn with(mut v: serde_json::Value, key: &str, value: serde_json::Value) -> serde_json::Value {
        v[key] = value;
        v
    }

    #[test]
    fn good_tokens_in_each_algorithm_ring_can_make() {
        for key in [TestKey::es256("k-ec"), TestKey::ed25519("k-ed")] {
            let keys = key.set();
            let token = key.sign(&claims());
            let grant = check(&token, &keys, 30).unwrap();
            assert_eq!(grant.subject, "alice");
            assert_eq!(grant.issuer, ISS);
            assert_eq!(grant.access, Access::Read);
            // aud as an array containing the resource; scopes in `scp`; typ variants.
            let c = with(claims(), "aud", json!(["other", AUD]));
            let c = with(c, "scp", json!(["payment_links:write"]));
            for typ in ["at+jwt", "application/at+JWT", "JWT"] {
                let token = key.sign_with(&c, json!({"typ": typ}));
                assert_eq!(
                    check(&token, &keys, 30).unwrap().access,
                    Access::Write,
                    "{typ}"
                );
            }
            // No typ at all (Okta): accepted.
            let token = key.sign_with(&claims(), json!({"typ": null}));
            assert!(check(&token, &keys, 30).is_ok());
        }
    }

    #[test]
    fn the_header_decides_before_any_key_is_looked_up() {
        let key = TestKey::es256("k1");
        let keys = key.set();
        let bad = |token: &str| check(token, &keys, 30).unwrap_err();
        // alg none, with and without a signature.
        let none = mint(
            &json!({"alg": "none", "typ": "at+jwt", "kid": "k1"}),
            &claims(),
            b"",
        );
        assert!(matches!(bad(&none), Verdict::Invalid(m) if m.contains("header")));
        // HS256 "signed" with the public key as the secret.
        let hs = key.sign_hs256_with_public_key(&claims());
        assert!(matches!(bad(&hs), Verdict::Invalid(m) if m.contains("algorithm")));
        for alg in ["ES384", "RS512", "HS512", "Ed25519"] {
            let t = mint(
                &json!({"alg": alg, "typ": "at+jwt", "kid": "k1"}),
                &claims(),
                b"sig",
            );
            assert!(matches!(bad(&t), Verdict::Invalid(_)), "{alg}");
        }
        for typ in ["id_token+jwt", "logout+jwt", "dpop+jwt", ""] {
            let t = key.sign_with(&claims(), json!({"typ": typ}));
            assert!(
                matches!(bad(&t), Verdict::Invalid(m) if m.contains("typ")),
                "{typ}"
            );
        }
        let t = key.sign_with(&claims(), json!({"kid": null}));
        assert!(matches!(bad(&t), Verdict::Invalid(m) if m.contains("kid")));
        // Over 8 KiB: refused before the header is read.
        let long = format!("{}.{}.x", "a".repeat(MAX_TOKEN_BYTES), "b");
        assert_eq!(check_header(&long).unwrap_err(), "the token is too long");
        assert!(check_header("not a jwt").is_err());
        // An unknown key id is for the caller to refetch.
        let other = TestKey::es256("k2");
        assert_eq!(bad(&other.sign(&claims())), Verdict::UnknownKey);
    }

    #[test]
    fn signature_and_key_must_match() {
        let key = TestKey::es256("k1");
        let keys = key.set();
        let token = key.sign(&claims());
        // One signature character changed.
        let mut altered = token.clone().into_bytes();
        let last = altered.len() - 3;
        altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(altered).unwrap();
        assert_eq!(
            check(&altered, &keys, 30).unwrap_err(),
            Verdict::Invalid("the token's signature does not verify")
        );
        // The same kid on a key of another type: an EdDSA token against an EC key.
        let ed = TestKey::ed25519("k1");
        assert!(matches!(
            check(&ed.sign(&claims()), &keys, 30).unwrap_err(),
            Verdict::Invalid(m) if m.contains("does not fit")
        ));
        // Another key's signature under this kid.
        let imposter = TestKey::es256("k1");
        assert!(check(&imposter.sign(&claims()), &keys, 30).is_err());
        // A key whose own alg differs from the token's.
        let mut pinned = key.set();
        pinned.keys[0].common.key_algorithm = Some(KeyAlgorithm::RS256);
        assert!(check(&token, &pinned, 30).is_err());
        let mut enc = key.set();
        enc.keys[0].common.public_key_use = Some(PublicKeyUse::Encryption);
        assert!(check(&token, &enc, 30).is_err());
    }

    #[test]
    fn every_key_with_the_kid_is_tried() {
        let signer = TestKey::es256("k1");
        let token = signer.sign(&claims());
        let set = |keys: Vec<serde_json::Value>| -> JwkSet {
            serde_json::from_value(json!({ "keys": keys })).unwrap()
        };
        // An encryption key first, under the same kid: skipped.
        let mut enc = TestKey::es256("k1").jwk();
        enc["use"] = json!("enc");
        enc.as_object_mut().unwrap().remove("alg");
        let keys = set(vec![enc.clone(), signer.jwk()]);
        assert_eq!(check(&token, &keys, 30).unwrap().subject, "alice");
        // A key of another type, and another signing key of the same type, first: tried, passed.
        let keys = set(vec![
            TestKey::ed25519("k1").jwk(),
            TestKey::es256("k1").jwk(),
            signer.jwk(),
        ]);
        assert_eq!(check(&token, &keys, 30).unwrap().subject, "alice");
        // What the claims say still stands once a key verified the signature.
        let expired = signer.sign(&with(claims(), "exp", json!(now() - 120)));
        assert_eq!(
            check(&expired, &keys, 30).unwrap_err(),
            Verdict::Invalid("the token has expired")
        );
        // No key of the kid verifies it, or none fits.
        let keys = set(vec![enc, TestKey::es256("k1").jwk()]);
        assert_eq!(
            check(&token, &keys, 30).unwrap_err(),
            Verdict::Invalid("the token's signature does not verify")
        );
        let keys = set(vec![TestKey::ed25519("k1").jwk()]);
        assert!(matches!(
            check(&token, &keys, 30).unwrap_err(),
            Verdict::Invalid(m) if m.contains("does not fit")
        ));
    }

    #[test]
    fn claims_issuer_audience_and_time() {
        let key = TestKey::ed25519("k");
        let keys = key.set();
        let verdict = |c: serde_json::Value, leeway: u64| check(&key.sign(&c), &keys, leeway);
        let invalid = |c: serde_json::Value| match verdict(c, 30) {
            Err(Verdict::Invalid(m)) => m,
            other => panic!("{other:?}"),
        };
        assert!(invalid(with(claims(), "iss", json!("https://evil.example.com"))).contains("iss"));
        assert!(invalid(with(claims(), "iss", json!(format!("{ISS}/")))).contains("iss"));
        assert!(invalid(with(claims(), "aud", json!("https://mcp.example.com"))).contains("aud"));
        assert!(invalid(with(claims(), "aud", json!(["a", "b"]))).contains("aud"));
        assert!(invalid(with(claims(), "exp", json!(now() - 31))).contains("expired"));
        assert!(verdict(with(claims(), "exp", json!(now() - 10)), 30).is_ok());
        assert!(verdict(with(claims(), "exp", json!(now() - 10)), 0).is_err());
        assert!(invalid(with(claims(), "nbf", json!(now() + 120))).contains("nbf"));
        assert!(verdict(with(claims(), "nbf", json!(now() + 10)), 30).is_ok());
        // The type confusions jsonwebtoken 10.3 and 12 fixed: a string is not a time.
        assert!(verdict(with(claims(), "nbf", json!((now() + 120).to_string())), 30).is_err());
        assert!(verdict(with(claims(), "exp", json!(now().to_string())), 30).is_err());
        for missing in ["exp", "iss", "aud", "sub"] {
            let mut c = claims();
            c.as_object_mut().unwrap().remove(missing);
            assert!(verdict(c, 30).is_err(), "{missing}");
        }
        assert!(invalid(with(claims(), "sub", json!(""))).contains("sub"));
        assert!(verdict(with(claims(), "sub", json!(42)), 30).is_err());
        // No scope at all: a valid token that grants nothing.
        let mut c = claims();
        c.as_object_mut().unwrap().remove("scope");
        assert_eq!(verdict(c, 30).unwrap().access, Access::Nothing);
    }

    #[test]
    fn opaque_tokens_are_told_apart_by_shape() {
        assert!(is_jwt("a.b.c"));
        assert!(is_jwt("a.b."));
        assert!(!is_jwt("opaque-token"));
        assert!(!is_jwt("a.b.c.d.e"));
    }
}
