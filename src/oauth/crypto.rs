//! The signature checks behind `jsonwebtoken`: a `CryptoProvider` on ring.
//!
//! jsonwebtoken 12 leaves its crypto to a provider; its own providers need aws-lc-rs or the
//! RustCrypto crates (with `rsa`, which `cargo audit` flags), while ring is already in the build
//! for TLS. This provider verifies exactly the four algorithms OAuth mode accepts (RS256, PS256,
//! ES256, EdDSA with Ed25519): any other algorithm is refused by the factory itself, whatever a
//! `Validation` says, so `none`, HS* and the rest can never reach a verifier. It never signs: this
//! server only checks tokens.
//!
//! The provider is process-wide; [`install`] puts it in place before the first token is read.

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{Error, ErrorKind};
use jsonwebtoken::signature::{self, Verifier};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind, EncodingKey};
use ring::signature as rs;

/// The algorithms a token may be signed with.
pub(crate) const ALLOWED: [Algorithm; 4] = [
    Algorithm::RS256,
    Algorithm::PS256,
    Algorithm::ES256,
    Algorithm::EdDSA,
];

static RING_PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: no_signer,
    verifier_factory: new_verifier,
    // JWK thumbprints and key conversions: not used by a resource server.
    key_utils: KeyUtils::new_unimplemented(),
};

/// Makes ring jsonwebtoken's provider for this process. Safe to call more than once.
///
/// Returns false if another provider was installed first (then that one would check tokens:
/// start-up refuses to go on, see `transport::http`).
pub(crate) fn install() -> bool {
    let _ = RING_PROVIDER.install_default();
    CryptoProvider::try_get_default().is_some_and(|p| std::ptr::eq(p, &RING_PROVIDER))
}

struct RingVerifier {
    alg: Algorithm,
    key: DecodingKey,
}

impl Verifier<Vec<u8>> for RingVerifier {
    fn verify(&self, msg: &[u8], sig: &Vec<u8>) -> Result<(), signature::Error> {
        let bad = |_| signature::Error::new();
        let rsa: &'static rs::RsaParameters = if self.alg == Algorithm::RS256 {
            &rs::RSA_PKCS1_2048_8192_SHA256
        } else {
            &rs::RSA_PSS_2048_8192_SHA256
        };
        match (self.alg, self.key.kind()) {
            (Algorithm::RS256 | Algorithm::PS256, DecodingKeyKind::RsaModulusExponent { n, e }) => {
                rs::RsaPublicKeyComponents { n, e }
                    .verify(rsa, msg, sig)
                    .map_err(bad)
            }
            (Algorithm::RS256 | Algorithm::PS256, DecodingKeyKind::SecretOrDer(der)) => {
                rs::UnparsedPublicKey::new(rsa, der)
                    .verify(msg, sig)
                    .map_err(bad)
            }
            // A key from EC components holds the uncompressed point 0x04||x||y, as ring wants.
            (Algorithm::ES256, DecodingKeyKind::SecretOrDer(point)) => {
                rs::UnparsedPublicKey::new(&rs::ECDSA_P256_SHA256_FIXED, point)
                    .verify(msg, sig)
                    .map_err(bad)
            }
            (Algorithm::EdDSA, DecodingKeyKind::SecretOrDer(x)) => {
                rs::UnparsedPublicKey::new(&rs::ED25519, x)
                    .verify(msg, sig)
                    .map_err(bad)
            }
            _ => Err(signature::Error::new()),
        }
    }
}

impl JwtVerifier for RingVerifier {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

fn new_verifier(alg: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>, Error> {
    let fits = match alg {
        Algorithm::RS256 | Algorithm::PS256 => key.family() == AlgorithmFamily::Rsa,
        Algorithm::ES256 => key.family() == AlgorithmFamily::Ec,
        Algorithm::EdDSA => key.family() == AlgorithmFamily::Ed,
        // HS*, RS384/512, PS384/512, ES384: never.
        _ => return Err(ErrorKind::InvalidAlgorithm.into()),
    };
    if !fits {
        return Err(ErrorKind::InvalidKeyFormat.into());
    }
    Ok(Box::new(RingVerifier {
        alg: *alg,
        key: key.clone(),
    }))
}

fn no_signer(_: &Algorithm, _: &EncodingKey) -> Result<Box<dyn JwtSigner>, Error> {
    Err(ErrorKind::InvalidAlgorithm.into())
}
