//! Keys and tokens: user JWTs (verified with a configured HS256 secret or RS256 public
//! key) and connector JWTs (RS256, minted here, verified by the relay).
//!
//! Never logs a token or a key.

use crate::store::Ts;
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;

/// Random bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).expect("the OS random source is available");
    b
}

/// 128 random bits as lowercase hex.
pub fn random_id() -> String {
    hex(&random_bytes::<16>())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of a secret as hex: what the store keeps instead of the secret.
pub fn digest(secret: &str) -> String {
    use sha2::Digest as _;
    hex(&sha2::Sha256::digest(secret.as_bytes()))
}

/// How user JWTs are verified.
#[derive(Clone)]
pub enum UserKey {
    /// HS256 shared secret.
    Hs256(Vec<u8>),
    /// RS256 public key (PEM); this process cannot mint user tokens.
    Rs256Public(Vec<u8>),
}

impl std::fmt::Debug for UserKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UserKey::Hs256(_) => f.write_str("Hs256(***)"),
            UserKey::Rs256Public(_) => f.write_str("Rs256Public(..)"),
        }
    }
}

/// Claims of a user JWT issued by the SaaS.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserClaims {
    /// User id (a number, or a string holding one).
    pub sub: serde_json::Value,
    /// Institutions the user may act on.
    #[serde(default)]
    pub tenants: Vec<i64>,
    /// Platform admin: every institution.
    #[serde(default)]
    pub admin: bool,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// A verified user.
#[derive(Debug, Clone)]
pub struct User {
    pub id: i32,
    pub tenants: Vec<i64>,
    pub admin: bool,
    pub name: Option<String>,
    pub email: Option<String>,
}

impl User {
    pub fn may_access(&self, tenant_id: i32) -> bool {
        self.admin || self.tenants.contains(&i64::from(tenant_id))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token expired")]
    Expired,
    #[error("invalid token: {0}")]
    Invalid(String),
}

/// Verifies (and, with an HS256 secret, mints) user JWTs.
#[derive(Clone)]
pub struct UserAuth {
    key: UserKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl UserAuth {
    pub fn new(key: UserKey) -> Result<Self, jsonwebtoken::errors::Error> {
        let (decoding, alg) = match &key {
            UserKey::Hs256(secret) => (DecodingKey::from_secret(secret), Algorithm::HS256),
            UserKey::Rs256Public(pem) => (DecodingKey::from_rsa_pem(pem)?, Algorithm::RS256),
        };
        let mut validation = Validation::new(alg);
        // `sub` may be a number: it is checked below, not by the spec-claim check.
        validation.set_required_spec_claims(&["exp"]);
        validation.leeway = 30;
        // A token not valid yet (`nbf` in the future) is refused like an expired one.
        validation.validate_nbf = true;
        Ok(Self {
            key,
            decoding,
            validation,
        })
    }

    pub fn verify(&self, token: &str) -> Result<User, TokenError> {
        use jsonwebtoken::errors::ErrorKind;
        let claims = jsonwebtoken::decode::<UserClaims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid(e.to_string()),
            })?
            .claims;
        let id = match &claims.sub {
            serde_json::Value::Number(n) => n.as_i64(),
            serde_json::Value::String(s) => s.parse().ok(),
            _ => None,
        }
        .and_then(|n| i32::try_from(n).ok())
        .filter(|n| *n > 0)
        .ok_or_else(|| TokenError::Invalid("sub must be a positive user id".into()))?;
        Ok(User {
            id,
            tenants: claims.tenants,
            admin: claims.admin,
            name: claims.name,
            email: claims.email,
        })
    }

    /// Mints a user token (HS256 only: an RS256 deployment's private key is the SaaS's).
    pub fn mint(&self, claims: &UserClaims) -> Result<String, TokenError> {
        match &self.key {
            UserKey::Hs256(secret) => jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                claims,
                &EncodingKey::from_secret(secret),
            )
            .map_err(|e| TokenError::Invalid(e.to_string())),
            UserKey::Rs256Public(_) => Err(TokenError::Invalid(
                "user tokens are verified with an RS256 public key; mint them with the SaaS's private key".into(),
            )),
        }
    }
}

/// A freshly minted connector token.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token: String,
    pub jti: String,
    pub expires_at: Ts,
}

/// Mints connector JWTs (RS256): `sub` connector id, `cli`, `tid`, `jti`, `exp`.
#[derive(Clone)]
pub struct ConnectorIssuer {
    key: EncodingKey,
    ttl: Duration,
}

impl ConnectorIssuer {
    pub fn from_rsa_pem(
        private_pem: &[u8],
        ttl: Duration,
    ) -> Result<Self, jsonwebtoken::errors::Error> {
        Ok(Self {
            key: EncodingKey::from_rsa_pem(private_pem)?,
            ttl,
        })
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    pub fn mint(&self, connector_id: i32, client_id: i32, tenant_id: i32) -> IssuedToken {
        let jti = random_id();
        let exp_secs = Utc::now().timestamp() + self.ttl.as_secs().max(1) as i64;
        let claims = serde_json::json!({
            "sub": connector_id.to_string(),
            "cli": client_id,
            "tid": tenant_id,
            "jti": jti,
            "exp": exp_secs,
        });
        let token = jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &self.key)
            .expect("an RSA key that parsed can sign");
        let expires_at = DateTime::<Utc>::from_timestamp(exp_secs, 0)
            .expect("expiry is in range")
            .naive_utc();
        IssuedToken {
            token,
            jti,
            expires_at,
        }
    }
}

/// Signing material kept in the data directory, created at first start.
#[derive(Debug, Clone)]
pub struct KeyFiles {
    /// RS256 private key for connector tokens (PKCS#8 PEM).
    pub connector_private_pem: Vec<u8>,
    /// Its public half (SPKI PEM), for the relay.
    pub connector_public_pem: Vec<u8>,
    /// HS256 secret for user tokens minted by `ponte admin user-token`.
    pub user_secret: Vec<u8>,
}

impl KeyFiles {
    pub const CONNECTOR_KEY: &'static str = "connector-signing-key.pem";
    pub const CONNECTOR_PUB: &'static str = "connector-signing-key.pub.pem";
    pub const USER_SECRET: &'static str = "user-jwt.secret";

    /// Loads the keys from `dir`, generating any that are missing (files mode 0600).
    pub fn load_or_create(dir: &Path) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating data dir {}", dir.display()))?;
        let key_path = dir.join(Self::CONNECTOR_KEY);
        let private = if key_path.exists() {
            let pem = std::fs::read_to_string(&key_path)
                .with_context(|| format!("reading {}", key_path.display()))?;
            rsa::RsaPrivateKey::from_pkcs8_pem(&pem)
                .with_context(|| format!("{} is not a PKCS#8 RSA key", key_path.display()))?
        } else {
            tracing::info!(path = %key_path.display(), "generating the connector signing key (RSA 2048)");
            let mut rng = rsa::rand_core::OsRng;
            let key = rsa::RsaPrivateKey::new(&mut rng, 2048).context("generating an RSA key")?;
            let pem = key
                .to_pkcs8_pem(LineEnding::LF)
                .context("encoding the RSA key")?;
            write_private(&key_path, pem.as_bytes())?;
            key
        };
        let private_pem = private.to_pkcs8_pem(LineEnding::LF)?.as_bytes().to_vec();
        let public_pem = private
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)?
            .into_bytes();
        let pub_path = dir.join(Self::CONNECTOR_PUB);
        if !pub_path.exists() {
            std::fs::write(&pub_path, &public_pem)
                .with_context(|| format!("writing {}", pub_path.display()))?;
        }
        let secret_path = dir.join(Self::USER_SECRET);
        let user_secret = if secret_path.exists() {
            std::fs::read(&secret_path)
                .with_context(|| format!("reading {}", secret_path.display()))?
        } else {
            let secret = hex(&random_bytes::<32>()).into_bytes();
            write_private(&secret_path, &secret)?;
            secret
        };
        Ok(Self {
            connector_private_pem: private_pem,
            connector_public_pem: public_pem,
            user_secret: trim_ascii(user_secret),
        })
    }
}

fn trim_ascii(mut v: Vec<u8>) -> Vec<u8> {
    while v.last().is_some_and(|b| b.is_ascii_whitespace()) {
        v.pop();
    }
    v
}

/// Writes a secret file readable by its owner only, atomically.
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

const PAIRING_ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTWXYZ23456789";

/// A pairing code like `K7QM-4XPD`: 8 characters from an alphabet without 0/O, 1/I/L, U/V.
pub fn pairing_code() -> String {
    let mut out = String::with_capacity(9);
    while out.len() < 9 {
        for b in random_bytes::<16>() {
            if let Some(ch) = pairing_char(b).filter(|_| out.len() < 9) {
                if out.len() == 4 {
                    out.push('-');
                }
                out.push(ch);
            }
        }
    }
    out
}

/// The pairing character a random byte stands for, or `None` for the bytes that would
/// bias the draw: rejection sampling keeps every character equally likely.
fn pairing_char(b: u8) -> Option<char> {
    let limit = 256 - 256 % PAIRING_ALPHABET.len();
    ((b as usize) < limit).then(|| PAIRING_ALPHABET[b as usize % PAIRING_ALPHABET.len()] as char)
}

/// Normalises what a person typed: case, spaces, a missing or extra dash.
pub fn normalize_code(input: &str) -> String {
    let raw: String = input
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    if raw.len() == 8 {
        format!("{}-{}", &raw[..4], &raw[4..])
    } else {
        raw
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairing_codes_are_readable_and_unambiguous() {
        for _ in 0..2000 {
            let c = pairing_code();
            assert_eq!(c.len(), 9, "{c}");
            assert_eq!(&c[4..5], "-");
            assert!(
                c.chars()
                    .all(|ch| ch == '-' || "ABCDEFGHJKMNPQRSTWXYZ23456789".contains(ch)),
                "{c}"
            );
            assert!(!c.contains(['0', 'O', '1', 'I', 'L', 'U', 'V']), "{c}");
        }
        assert_ne!(pairing_code(), pairing_code());
    }

    #[test]
    fn pairing_codes_use_the_whole_alphabet_and_vary() {
        // A biased or truncated index (a few characters only) would shrink the code space
        // a guesser has to cover; 2000 codes of 8 characters draw every one of 29.
        let codes: Vec<String> = (0..2000).map(|_| pairing_code()).collect();
        for ch in "ABCDEFGHJKMNPQRSTWXYZ23456789".chars() {
            assert!(codes.iter().any(|c| c.contains(ch)), "{ch} never drawn");
        }
        let distinct: std::collections::HashSet<_> = codes.iter().collect();
        assert_eq!(distinct.len(), codes.len(), "a pairing code repeated");
    }

    #[test]
    fn every_pairing_character_is_equally_likely() {
        // Over all 256 byte values each of the 29 characters comes out the same number of
        // times (8), and only the 24 bytes that would bias the draw are rejected.
        let mut counts = std::collections::BTreeMap::new();
        for b in 0..=255u8 {
            if let Some(ch) = pairing_char(b) {
                *counts.entry(ch).or_insert(0) += 1;
            }
        }
        assert_eq!(counts.len(), PAIRING_ALPHABET.len());
        assert!(counts.values().all(|&n| n == 8), "{counts:?}");
    }

    #[test]
    fn hex_and_digest_are_the_documented_encodings() {
        assert_eq!(hex(&[0x00, 0x0f, 0xab, 0xff]), "000fabff");
        assert_eq!(hex(&[]), "");
        // SHA-256("abc") from FIPS 180-2: the store compares against this form.
        assert_eq!(
            digest("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_ne!(digest("abc"), digest("abd"));
    }

    #[test]
    fn ids_are_128_random_bits_in_lowercase_hex() {
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| random_id()).collect();
        assert_eq!(ids.len(), 1000, "an id repeated");
        for id in &ids {
            assert_eq!(id.len(), 32, "{id}");
            assert!(
                id.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
                "{id}"
            );
        }
        assert_ne!(random_bytes::<32>(), [0u8; 32]);
    }

    #[test]
    fn debug_of_a_user_key_never_prints_the_secret() {
        let key = UserKey::Hs256(b"hunter2-very-secret".to_vec());
        assert_eq!(format!("{key:?}"), "Hs256(***)");
        assert_eq!(
            format!("{:?}", UserKey::Rs256Public(b"PEM".to_vec())),
            "Rs256Public(..)"
        );
    }

    fn connector_issuer(ttl: Duration) -> ConnectorIssuer {
        ConnectorIssuer::from_rsa_pem(ponte_tests::CONNECTOR_KEY, ttl).unwrap()
    }

    /// Decodes a connector token with the fixture's public key, expiry not checked.
    fn connector_claims(token: &str) -> serde_json::Value {
        let mut v = Validation::new(Algorithm::RS256);
        v.validate_exp = false;
        v.set_required_spec_claims(&["exp"]);
        let key = DecodingKey::from_rsa_pem(ponte_tests::CONNECTOR_PUB).unwrap();
        jsonwebtoken::decode::<serde_json::Value>(token, &key, &v)
            .unwrap()
            .claims
    }

    #[test]
    fn a_connector_token_expires_exactly_one_ttl_after_minting() {
        let ttl = Duration::from_secs(3600);
        let issuer = connector_issuer(ttl);
        assert_eq!(issuer.ttl(), ttl);
        let before = Utc::now().timestamp();
        let t = issuer.mint(5, 6, 7);
        let after = Utc::now().timestamp();
        let c = connector_claims(&t.token);
        let exp = c["exp"].as_i64().unwrap();
        assert!(
            (before + 3600..=after + 3600).contains(&exp),
            "exp {exp}, minted in [{before}, {after}]"
        );
        assert_eq!(t.expires_at.and_utc().timestamp(), exp);
        assert_eq!(c["sub"], "5");
        assert_eq!(c["cli"], 6);
        assert_eq!(c["tid"], 7);
        assert_eq!(c["jti"], t.jti.as_str());
        assert_eq!(t.jti.len(), 32);
        assert_ne!(issuer.mint(5, 6, 7).jti, t.jti, "a jti repeated");
        // A zero TTL still yields a token that is valid for a second, never one already dead.
        let zero = connector_issuer(Duration::ZERO).mint(5, 6, 7);
        assert!(zero.expires_at.and_utc().timestamp() > before);
    }

    fn temp_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("ponte-auth-{}", random_id()));
        std::fs::create_dir_all(&dir).unwrap();
        // A given connector key spares the test an RSA key generation.
        std::fs::write(
            dir.join(KeyFiles::CONNECTOR_KEY),
            ponte_tests::CONNECTOR_KEY,
        )
        .unwrap();
        dir
    }

    #[test]
    fn a_generated_user_secret_is_kept_owner_only_and_reloaded() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = temp_dir();
        let first = KeyFiles::load_or_create(&dir).unwrap();
        let path = dir.join(KeyFiles::USER_SECRET);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{path:?} mode {mode:o}");
        assert_eq!(std::fs::read(&path).unwrap(), first.user_secret);
        assert_eq!(first.user_secret.len(), 64, "256 bits as hex");
        assert!(
            !dir.join("user-jwt.tmp").exists(),
            "temporary file left behind"
        );
        let pub_pem = std::fs::read(dir.join(KeyFiles::CONNECTOR_PUB)).unwrap();
        assert_eq!(pub_pem, first.connector_public_pem);
        assert_eq!(first.connector_public_pem, ponte_tests::CONNECTOR_PUB);
        let again = KeyFiles::load_or_create(&dir).unwrap();
        assert_eq!(again.user_secret, first.user_secret);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_hand_written_user_secret_loses_its_trailing_newline() {
        // `echo secret > user-jwt.secret` must give the same key as the SaaS's "secret".
        let dir = temp_dir();
        std::fs::write(dir.join(KeyFiles::USER_SECRET), b"s3cret \r\n").unwrap();
        let keys = KeyFiles::load_or_create(&dir).unwrap();
        assert_eq!(keys.user_secret, b"s3cret");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn typed_codes_are_normalised() {
        assert_eq!(normalize_code("k7qm4xpd"), "K7QM-4XPD");
        assert_eq!(normalize_code(" K7QM - 4XPD "), "K7QM-4XPD");
        assert_eq!(normalize_code("K7QM-4XP"), "K7QM4XP");
    }

    #[test]
    fn user_tokens_round_trip_and_grants_are_checked() {
        let auth = UserAuth::new(UserKey::Hs256(b"s3cret".to_vec())).unwrap();
        let exp = (Utc::now().timestamp() + 60) as u64;
        let claims = |sub, tenants: Vec<i64>, admin| UserClaims {
            sub,
            tenants,
            admin,
            exp,
            name: None,
            email: None,
        };
        let u = auth
            .verify(
                &auth
                    .mint(&claims(serde_json::json!(7), vec![2], false))
                    .unwrap(),
            )
            .unwrap();
        assert_eq!(u.id, 7);
        assert!(u.may_access(2) && !u.may_access(3));
        let a = auth
            .verify(
                &auth
                    .mint(&claims(serde_json::json!("9"), vec![], true))
                    .unwrap(),
            )
            .unwrap();
        assert!(a.may_access(3));
        for bad in [
            serde_json::json!("x"),
            serde_json::json!(0),
            serde_json::json!(-4),
        ] {
            assert!(auth
                .verify(&auth.mint(&claims(bad, vec![2], false)).unwrap())
                .is_err());
        }
        let other = UserAuth::new(UserKey::Hs256(b"other".to_vec())).unwrap();
        let forged = other
            .mint(&claims(serde_json::json!(7), vec![2], true))
            .unwrap();
        assert!(matches!(auth.verify(&forged), Err(TokenError::Invalid(_))));
        let mut old = claims(serde_json::json!(7), vec![2], false);
        old.exp = (Utc::now().timestamp() - 3600) as u64;
        assert!(matches!(
            auth.verify(&auth.mint(&old).unwrap()),
            Err(TokenError::Expired)
        ));
    }
}
