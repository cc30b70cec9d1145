//! Keys and tokens for the unit tests: ring makes the keys (ES256, Ed25519) and signs, by hand,
//! so that a test can also write what no issuer would (`alg: none`, HS256, odd headers).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::jwk::JwkSet;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use serde_json::{Value, json};

pub(super) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `header.claims.signature`, each part base64url.
pub(super) fn mint(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string()),
        B64.encode(signature)
    )
}

enum Pair {
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

/// A signing key and its public JWK.
pub(super) struct TestKey {
    pair: Pair,
    kid: String,
}

impl TestKey {
    pub(super) fn es256(kid: &str) -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        TestKey {
            pair: Pair::Ec(pair),
            kid: kid.into(),
        }
    }

    pub(super) fn ed25519(kid: &str) -> Self {
        let mut seed = [0u8; 32];
        SystemRandom::new().fill(&mut seed).unwrap();
        TestKey {
            pair: Pair::Ed(Ed25519KeyPair::from_seed_unchecked(&seed).unwrap()),
            kid: kid.into(),
        }
    }

    fn public(&self) -> &[u8] {
        match &self.pair {
            Pair::Ec(p) => p.public_key().as_ref(),
            Pair::Ed(p) => p.public_key().as_ref(),
        }
    }

    pub(super) fn jwk(&self) -> Value {
        let public = self.public();
        match &self.pair {
            Pair::Ec(_) => json!({"kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256",
                "kid": self.kid, "x": B64.encode(&public[1..33]), "y": B64.encode(&public[33..65])}),
            Pair::Ed(_) => json!({"kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA",
                "kid": self.kid, "x": B64.encode(public)}),
        }
    }

    /// A key set holding this key only.
    pub(super) fn set(&self) -> JwkSet {
        serde_json::from_value(json!({"keys": [self.jwk()]})).unwrap()
    }

    fn alg(&self) -> &'static str {
        match self.pair {
            Pair::Ec(_) => "ES256",
            Pair::Ed(_) => "EdDSA",
        }
    }

    pub(super) fn sign(&self, claims: &Value) -> String {
        self.sign_with(claims, json!({}))
    }

    /// Signs with the default header (`alg`, `typ: at+jwt`, `kid`) changed by `changes`; a null
    /// removes a field.
    pub(super) fn sign_with(&self, claims: &Value, changes: Value) -> String {
        let mut header = json!({"alg": self.alg(), "typ": "at+jwt", "kid": self.kid});
        for (k, v) in changes.as_object().unwrap() {
            if v.is_null() {
                header.as_object_mut().unwrap().remove(k);
            } else {
                header[k] = v.clone();
            }
        }
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let signature = match &self.pair {
            Pair::Ec(p) => p
                .sign(&SystemRandom::new(), input.as_bytes())
                .unwrap()
                .as_ref()
                .to_vec(),
            Pair::Ed(p) => p.sign(input.as_bytes()).as_ref().to_vec(),
        };
        format!("{input}.{}", B64.encode(signature))
    }

    /// The key-confusion attack: HS256 with this key's public bytes as the HMAC secret.
    pub(super) fn sign_hs256_with_public_key(&self, claims: &Value) -> String {
        let header = json!({"alg": "HS256", "typ": "at+jwt", "kid": self.kid});
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, self.public());
        let tag = ring::hmac::sign(&key, input.as_bytes());
        format!("{input}.{}", B64.encode(tag.as_ref()))
    }
}
