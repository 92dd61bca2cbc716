//! Password hashes as RabbitMQ stores them, so that users exported from RabbitMQ (definitions
//! JSON, `password_hash` + `hashing_algorithm`) log in to Pigeon with their old passwords.
//!
//! `rabbit_password:hash/2`: a random 32-bit salt, then `Hash(salt ++ UTF-8 password)`, kept as
//! `salt ++ digest` and shown in definitions as base64 of those bytes. The default module is
//! `rabbit_password_hashing_sha256`; `rabbit_password_hashing_sha512` and the legacy
//! `rabbit_password_hashing_md5` (users from before RabbitMQ 3.6) are accepted on import and
//! verified, never produced.

use base64::Engine;
use md5::Md5;
use rand::RngCore;
use sha2::{Digest, Sha256, Sha512};

/// Bytes of salt in front of the digest (`rabbit_password:generate_salt/0`: 32 bits).
pub const SALT_LEN: usize = 4;

/// The hashing module of a stored password, by RabbitMQ's name for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashingAlgorithm {
    /// `rabbit_password_hashing_sha256`, RabbitMQ's default and the one Pigeon produces.
    Sha256,
    /// `rabbit_password_hashing_sha512`.
    Sha512,
    /// `rabbit_password_hashing_md5` (legacy; verify only).
    Md5,
}

impl HashingAlgorithm {
    /// RabbitMQ's module name, as in a definitions file's `hashing_algorithm`.
    pub fn name(self) -> &'static str {
        match self {
            HashingAlgorithm::Sha256 => "rabbit_password_hashing_sha256",
            HashingAlgorithm::Sha512 => "rabbit_password_hashing_sha512",
            HashingAlgorithm::Md5 => "rabbit_password_hashing_md5",
        }
    }

    /// The algorithm a module name stands for.
    pub fn from_name(name: &str) -> Option<HashingAlgorithm> {
        Some(match name {
            "rabbit_password_hashing_sha256" => HashingAlgorithm::Sha256,
            "rabbit_password_hashing_sha512" => HashingAlgorithm::Sha512,
            "rabbit_password_hashing_md5" => HashingAlgorithm::Md5,
            _ => return None,
        })
    }

    fn code(self) -> u8 {
        match self {
            HashingAlgorithm::Sha256 => 1,
            HashingAlgorithm::Sha512 => 2,
            HashingAlgorithm::Md5 => 3,
        }
    }

    fn from_code(code: u8) -> Option<HashingAlgorithm> {
        Some(match code {
            1 => HashingAlgorithm::Sha256,
            2 => HashingAlgorithm::Sha512,
            3 => HashingAlgorithm::Md5,
            _ => return None,
        })
    }

    fn digest_len(self) -> usize {
        match self {
            HashingAlgorithm::Sha256 => 32,
            HashingAlgorithm::Sha512 => 64,
            HashingAlgorithm::Md5 => 16,
        }
    }

    /// `Hash(salt ++ password)`.
    fn digest(self, salt: &[u8], password: &[u8]) -> Vec<u8> {
        fn run<D: Digest>(salt: &[u8], password: &[u8]) -> Vec<u8> {
            let mut d = D::new();
            d.update(salt);
            d.update(password);
            d.finalize().to_vec()
        }
        match self {
            HashingAlgorithm::Sha256 => run::<Sha256>(salt, password),
            HashingAlgorithm::Sha512 => run::<Sha512>(salt, password),
            HashingAlgorithm::Md5 => run::<Md5>(salt, password),
        }
    }
}

/// Why a stored or imported password hash cannot be used.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum PasswordError {
    /// The text is not base64.
    #[error("the password hash is not valid base64")]
    Base64,
    /// Salt and digest do not have the algorithm's length.
    #[error("the password hash has {got} bytes, {algorithm} needs {want}")]
    Length {
        /// The algorithm's module name.
        algorithm: &'static str,
        /// Bytes found.
        got: usize,
        /// Bytes expected (salt and digest).
        want: usize,
    },
    /// A `hashing_algorithm` Pigeon does not know.
    #[error("unsupported hashing algorithm '{0}'")]
    Algorithm(String),
}

/// A salted password hash: `salt ++ Hash(salt ++ password)`.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash {
    algorithm: HashingAlgorithm,
    salted: Vec<u8>,
}

impl std::fmt::Debug for PasswordHash {
    // The hash is a secret too (it can be brute-forced offline): logs show only its kind.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PasswordHash({})", self.algorithm.name())
    }
}

/// Hashes `password` with a fresh random salt, as `rabbitmqctl add_user` does by default.
pub fn hash_password(password: &str) -> PasswordHash {
    let mut salt = [0u8; SALT_LEN];
    rand::rng().fill_bytes(&mut salt);
    PasswordHash::with_salt(HashingAlgorithm::Sha256, salt, password.as_bytes())
}

impl PasswordHash {
    /// The hash of `password` with a given salt (tests, and the dummy of unknown users).
    pub fn with_salt(
        algorithm: HashingAlgorithm,
        salt: [u8; SALT_LEN],
        password: &[u8],
    ) -> PasswordHash {
        let mut salted = salt.to_vec();
        salted.extend_from_slice(&algorithm.digest(&salt, password));
        PasswordHash { algorithm, salted }
    }

    /// Reads a definitions file's `password_hash` (base64 of `salt ++ digest`) made by
    /// `algorithm`.
    pub fn from_base64(
        text: &str,
        algorithm: HashingAlgorithm,
    ) -> Result<PasswordHash, PasswordError> {
        let salted = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|_| PasswordError::Base64)?;
        PasswordHash::from_bytes(algorithm, salted)
    }

    /// The same, with the algorithm by RabbitMQ's module name.
    pub fn from_definition(text: &str, algorithm: &str) -> Result<PasswordHash, PasswordError> {
        let algorithm = HashingAlgorithm::from_name(algorithm)
            .ok_or_else(|| PasswordError::Algorithm(algorithm.to_string()))?;
        PasswordHash::from_base64(text, algorithm)
    }

    fn from_bytes(
        algorithm: HashingAlgorithm,
        salted: Vec<u8>,
    ) -> Result<PasswordHash, PasswordError> {
        let want = SALT_LEN + algorithm.digest_len();
        if salted.len() != want {
            return Err(PasswordError::Length {
                algorithm: algorithm.name(),
                got: salted.len(),
                want,
            });
        }
        Ok(PasswordHash { algorithm, salted })
    }

    /// Base64 of `salt ++ digest`, a definitions file's `password_hash`.
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.salted)
    }

    /// The algorithm that made it.
    pub fn algorithm(&self) -> HashingAlgorithm {
        self.algorithm
    }

    /// Whether `password` hashes to this. The digests are compared in constant time.
    pub fn verify(&self, password: &[u8]) -> bool {
        let (salt, digest) = self.salted.split_at(SALT_LEN);
        let computed = self.algorithm.digest(salt, password);
        constant_time_eq(&computed, digest)
    }

    /// The stored form: one algorithm byte, then `salt ++ digest`.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + self.salted.len());
        out.push(self.algorithm.code());
        out.extend_from_slice(&self.salted);
        out
    }

    /// Reads [`PasswordHash::encode`]'s form.
    pub(crate) fn decode(bytes: &[u8]) -> Option<PasswordHash> {
        let (&code, salted) = bytes.split_first()?;
        PasswordHash::from_bytes(HashingAlgorithm::from_code(code)?, salted.to_vec()).ok()
    }
}

/// Compares without an early exit on the first differing byte (the lengths are the
/// algorithm's, not secret).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A hash no password is known for: verified against when the user does not exist or has no
/// password, so that a refusal costs the same time either way.
pub(crate) fn dummy() -> &'static PasswordHash {
    static DUMMY: std::sync::OnceLock<PasswordHash> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        let mut salt = [0u8; SALT_LEN];
        rand::rng().fill_bytes(&mut salt);
        PasswordHash::with_salt(HashingAlgorithm::Sha256, salt, &secret)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // The example of RabbitMQ's passwords guide ("Computing a password hash"): salt 908DC60A,
    // password "test12". Checked independently with python3:
    //   salt = bytes.fromhex("908dc60a")
    //   base64.b64encode(salt + hashlib.sha256(salt + b"test12").digest())
    const SALT: [u8; 4] = [0x90, 0x8d, 0xc6, 0x0a];
    const SHA256: &str = "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR";
    // python3: base64.b64encode(salt + hashlib.sha512(salt + b"test12").digest())
    const SHA512: &str =
        "kI3GChuNuIYf8lRbCCxZjgjKwsY19ns6+uFO0zcXRBGA/XGJPYD8OWMy7EB8TaOmAzjP2azv84GbINYwX2cDWb4DHnc=";
    // The MD5 example of the rabbitmq-discuss thread on the hash layout (2011): salt CAD5089B,
    // password "simon" (python3: hashlib.md5(salt + b"simon")).
    const MD5: &str = "ytUIm8s3AnKsXQjptplKFytfVxI=";

    #[test]
    fn sha256_matches_rabbitmq_layout() {
        let h = PasswordHash::with_salt(HashingAlgorithm::Sha256, SALT, b"test12");
        assert_eq!(h.to_base64(), SHA256);
        let back = PasswordHash::from_base64(SHA256, HashingAlgorithm::Sha256).unwrap();
        assert_eq!(back, h);
        assert!(back.verify(b"test12"));
        assert!(!back.verify(b"test13"));
        assert!(!back.verify(b""));
    }

    #[test]
    fn imported_sha512_and_md5_hashes_verify() {
        let h = PasswordHash::from_definition(SHA512, "rabbit_password_hashing_sha512").unwrap();
        assert!(h.verify(b"test12"));
        assert!(!h.verify(b"test1"));
        let h = PasswordHash::from_definition(MD5, "rabbit_password_hashing_md5").unwrap();
        assert!(h.verify(b"simon"));
        assert!(!h.verify(b"Simon"));
    }

    #[test]
    fn fresh_hashes_are_salted_and_verify() {
        let a = hash_password("secret");
        let b = hash_password("secret");
        assert_ne!(a.to_base64(), b.to_base64(), "a random salt each time");
        assert!(a.verify(b"secret") && b.verify(b"secret"));
        assert!(!a.verify(b"Secret"));
        // Non-ASCII passwords are hashed as UTF-8.
        let c = hash_password("pässwörd");
        assert!(c.verify("pässwörd".as_bytes()));
    }

    #[test]
    fn bad_imports_are_refused() {
        assert_eq!(
            PasswordHash::from_base64("not base64!", HashingAlgorithm::Sha256),
            Err(PasswordError::Base64)
        );
        assert!(matches!(
            PasswordHash::from_base64(SHA256, HashingAlgorithm::Sha512),
            Err(PasswordError::Length { .. })
        ));
        assert!(matches!(
            PasswordHash::from_definition(SHA256, "rabbit_password_hashing_bcrypt"),
            Err(PasswordError::Algorithm(_))
        ));
    }

    #[test]
    fn stored_form_round_trips() {
        let h = hash_password("x");
        assert_eq!(PasswordHash::decode(&h.encode()), Some(h));
        assert_eq!(PasswordHash::decode(&[9, 1, 2]), None);
    }
}
