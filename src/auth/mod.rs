//! Authentication: tokens (`keys`: what each token kind is checked with; `token`: verifying
//! connection and subscription JWTs, signing them for the CLI) and the server API key
//! (`api_key`). `Verifier` holds the keys of both token kinds, built once per shard. Pure
//! checks over values the edges hand in; imports `config` and `clock`.

pub mod api_key;
pub mod jwks;
pub mod keys;
pub mod token;

use crate::config::Config;
use keys::TokenKeys;
use token::{ConnectClaims, SubscribeClaims, TokenError};

/// The keys tokens are checked with, and the channel section their channels are resolved
/// against.
pub struct Verifier {
    connection: TokenKeys,
    /// `None`: subscription tokens use the connection token's keys.
    subscription: Option<TokenKeys>,
    channels: crate::config::ChannelSection,
}

impl Verifier {
    /// The verifier of `config`; a key that does not parse is an error naming it
    /// (validation catches it at start).
    pub fn new(config: &Config) -> Result<Self, String> {
        let subscription = &config.client.subscription_token;
        Ok(Verifier {
            connection: TokenKeys::new(&config.client.token, "client.token")?,
            subscription: if subscription.enabled {
                Some(TokenKeys::new(
                    &subscription.token,
                    "client.subscription_token",
                )?)
            } else {
                None
            },
            channels: config.channel.clone(),
        })
    }

    /// Verifies a connection token.
    pub fn connect(&self, token: &str) -> Result<ConnectClaims, TokenError> {
        token::verify_connect(token, &self.connection, &self.channels)
    }

    /// Verifies a subscription token.
    pub fn subscribe(&self, token: &str) -> Result<SubscribeClaims, TokenError> {
        let keys = self.subscription.as_ref().unwrap_or(&self.connection);
        token::verify_subscribe(token, keys, &self.channels)
    }
}
