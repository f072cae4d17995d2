//! Access tokens (HS256 JWTs) and refresh tokens (random, stored hashed).

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::clock;
use crate::model::User;
use crate::store::{Store, StoreError};

const SECRET_KEY: &str = "signing_secret";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Claims {
    pub sub: String,
    pub roles: Vec<String>,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    /// The user's token generation when issued; a bump revokes the token.
    #[serde(rename = "gen")]
    pub generation: u64,
    /// The sign-in session; ending or revoking it revokes the token.
    pub sid: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token expired")]
    Expired,
    #[error("invalid token")]
    Invalid,
}

#[derive(Debug, Clone, Serialize)]
pub struct TokenPair {
    pub token: String,
    pub refresh_token: String,
    pub expires_in: u64,
}

#[derive(Clone)]
pub struct TokenIssuer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

/// The 256-bit signing secret, created on first start and kept in `meta`.
pub fn load_or_create_secret(store: &Store) -> Result<Vec<u8>, StoreError> {
    if let Some(secret) = store.meta_get(SECRET_KEY)? {
        if secret.len() == 32 {
            return Ok(secret);
        }
    }
    let mut secret = vec![0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    store.meta_put(SECRET_KEY, &secret)?;
    Ok(secret)
}

pub fn random_token(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

impl TokenIssuer {
    pub fn new(secret: &[u8]) -> TokenIssuer {
        let mut validation = Validation::new(Algorithm::HS256);
        // An expired token is expired: no grace period.
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub", "iat"]);
        TokenIssuer {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    pub fn access_token(
        &self,
        user: &User,
        session: &str,
        ttl: Duration,
    ) -> Result<String, TokenError> {
        let now = clock::now_ms() / 1000;
        let claims = Claims {
            sub: user.id.clone(),
            roles: user.roles.clone(),
            iat: now,
            exp: now + ttl.as_secs() as i64,
            jti: crate::ids::generate(),
            generation: user.generation,
            sid: session.to_owned(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|_| TokenError::Invalid)
    }

    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })?;
        // jsonwebtoken refuses only `exp < now` in whole seconds, which
        // accepts a token for up to a second after `exp`; a token is
        // expired from the moment `exp` is reached.
        if claims.exp <= clock::now_ms() / 1000 {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> User {
        User {
            roles: vec!["admin".into()],
            generation: 2,
            ..User::plain()
        }
    }

    #[test]
    fn tokens_verify_and_carry_the_claims() {
        let issuer = TokenIssuer::new(&[7; 32]);
        let token = issuer
            .access_token(&user(), "s1", Duration::from_secs(60))
            .unwrap();
        let claims = issuer.verify(&token).unwrap();
        assert_eq!(claims.sub, "u1");
        assert_eq!(claims.generation, 2);
        assert_eq!(claims.exp - claims.iat, 60);
    }

    #[test]
    fn other_secrets_and_tampering_are_rejected() {
        let issuer = TokenIssuer::new(&[7; 32]);
        let other = TokenIssuer::new(&[8; 32]);
        let token = other
            .access_token(&user(), "s1", Duration::from_secs(60))
            .unwrap();
        assert_eq!(issuer.verify(&token), Err(TokenError::Invalid));
        let unsigned = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
            token.split('.').nth(1).unwrap()
        );
        assert_eq!(issuer.verify(&unsigned), Err(TokenError::Invalid));
    }

    #[test]
    fn a_token_is_expired_in_the_second_of_its_exp() {
        let issuer = TokenIssuer::new(&[7; 32]);
        let now = clock::now_ms() / 1000;
        let claims = Claims {
            sub: "u1".into(),
            roles: vec![],
            iat: now - 100,
            exp: now,
            jti: "j".into(),
            generation: 0,
            sid: "s1".into(),
        };
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(&[7; 32]),
        )
        .unwrap();
        assert_eq!(issuer.verify(&token), Err(TokenError::Expired));
    }

    #[test]
    fn expired_tokens_are_expired_without_leeway() {
        let issuer = TokenIssuer::new(&[7; 32]);
        let now = clock::now_ms() / 1000;
        let claims = Claims {
            sub: "u1".into(),
            roles: vec![],
            iat: now - 100,
            exp: now - 5,
            jti: "j".into(),
            generation: 0,
            sid: "s1".into(),
        };
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(&[7; 32]),
        )
        .unwrap();
        assert_eq!(issuer.verify(&token), Err(TokenError::Expired));
    }
}
