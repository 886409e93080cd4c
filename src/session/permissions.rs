//! Who may do what on a channel: the one place that decides it for client commands (and,
//! with the server API's own rules, later for the API), in Centrifugo v6's order of checks
//! (`OnSubscribe`, `OnPublish`, `OnHistory`, `OnPresence` of its client handler):
//!
//! - **subscribe**: the name (length, then the namespace: 102; then `channel_regex` on the
//!   part after the namespace, or ASCII when there is none: 107); a private (`$`) channel
//!   needs a token (103); a token decides alone when present (expired 109, invalid 103,
//!   for another channel, user or client: close 3500); else a user-limited channel
//!   (`name#42,43`, when the namespace allows them) admits the users it lists; else
//!   `allow_subscribe_for_client` admits users (and anonymous ones with
//!   `allow_subscribe_for_anonymous`) to channels that are not user-limited; else
//!   `client.insecure`; else 103.
//! - **publish**: `allow_publish_for_client`, or `allow_publish_for_subscriber` for a
//!   subscriber, anonymous users only with `allow_publish_for_anonymous`; else insecure;
//!   else 103.
//! - **history** and **presence**: 108 when the feature is off; then the same three rules
//!   with their own options.
//!
//! Every refusal carries its `Refusal` (counted in `/metrics`). Owns the compiled channel
//! patterns; imports `auth`, `config`, `protocol`.

use regex::Regex;

use crate::auth::token::{SubscriptionGrant, TokenError};
use crate::auth::Verifier;
use crate::config::{ChannelOptions, Config, NamespaceId};
use crate::protocol::{ClientId, Disconnect, ErrorCode, Refusal, SubscriptionOverrides};

/// A refused command: the reply error or the disconnect, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    Error(ErrorCode, Refusal),
    Disconnect(Disconnect, Refusal),
}

impl Denied {
    fn error(refusal: Refusal) -> Self {
        let code = match refusal {
            Refusal::UnknownChannel => ErrorCode::UnknownChannel,
            Refusal::BadChannel => ErrorCode::BadRequest,
            Refusal::NotAvailable => ErrorCode::NotAvailable,
            Refusal::TokenExpired => ErrorCode::TokenExpired,
            Refusal::TokenUnverifiable => ErrorCode::Internal,
            Refusal::CommandRate => ErrorCode::TooManyRequests,
            Refusal::Expired => ErrorCode::Expired,
            Refusal::PrivateWithoutToken
            | Refusal::TokenInvalid
            | Refusal::TokenMismatch
            | Refusal::NotAllowed
            | Refusal::NoToken => ErrorCode::PermissionDenied,
            // Refused at the upgrade, before there is a session (never a command's answer).
            Refusal::Origin
            | Refusal::ConnectionLimit
            | Refusal::ConnectionRate
            | Refusal::UserConnectionLimit
            | Refusal::ProxyHeader
            | Refusal::TlsHandshake => ErrorCode::Internal,
        };
        Denied::Error(code, refusal)
    }

    pub fn refusal(self) -> Refusal {
        match self {
            Denied::Error(_, r) | Denied::Disconnect(_, r) => r,
        }
    }
}

/// What a client asks to do on a channel besides subscribing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feature {
    Publish,
    History,
    /// `presence` and `presence_stats`.
    Presence,
}

/// Who asks.
#[derive(Debug, Clone, Copy)]
pub struct Asker<'a> {
    /// "" for an anonymous connection.
    pub user: &'a str,
    /// Its text is built only to check a token's `client` claim.
    pub client: ClientId,
}

impl Asker<'_> {
    fn anonymous(&self) -> bool {
        self.user.is_empty()
    }
}

/// How a subscription was allowed (Centrifugo's subscription source).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A subscription token: it may carry channel info, data, overrides and an expiry.
    Token {
        grant: SubscriptionGrant,
        expires_at: Option<u64>,
    },
    UserLimited,
    ClientAllowed,
    Insecure,
}

/// An allowed subscription: the options it runs with (the namespace's, with a token's
/// overrides applied) and how it was allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowed {
    pub options: ChannelOptions,
    pub source: Source,
}

/// The access rules with what they need compiled: the channel patterns by namespace.
pub struct Access {
    patterns: Vec<(NamespaceId, Regex)>,
}

impl Access {
    /// Compiles every namespace's `channel_regex`; one that does not compile is an error
    /// naming its namespace (validation catches it first).
    pub fn new(config: &Config) -> Result<Self, String> {
        let mut patterns = Vec::new();
        for id in config.channel.namespace_ids() {
            let pattern = &config.channel.namespace_options(id).channel_regex;
            if pattern.is_empty() {
                continue;
            }
            let regex = Regex::new(pattern)
                .map_err(|e| format!("channel_regex {pattern:?} does not compile: {e}"))?;
            patterns.push((id, regex));
        }
        Ok(Access { patterns })
    }

    /// The channel's namespace and options, if the name is acceptable (length, namespace,
    /// pattern or ASCII).
    fn resolve(&self, config: &Config, channel: &str) -> Result<ChannelOptions, Denied> {
        if channel.len() > config.channel.max_length {
            return Err(Denied::error(Refusal::BadChannel));
        }
        let id = config
            .channel
            .namespace_of(channel)
            .ok_or(Denied::error(Refusal::UnknownChannel))?;
        let valid = match self.patterns.iter().find(|(ns, _)| *ns == id) {
            Some((_, regex)) => regex.is_match(rest_of(config, channel)),
            None => channel.is_ascii(),
        };
        if !valid {
            return Err(Denied::error(Refusal::BadChannel));
        }
        Ok(*config.channel.options_of(id))
    }

    /// May `who` subscribe to `channel`, with `token` ("" for none)?
    pub fn subscribe(
        &self,
        config: &Config,
        tokens: &Verifier,
        who: Asker<'_>,
        channel: &str,
        token: &str,
    ) -> Result<Allowed, Denied> {
        let mut options = self.resolve(config, channel)?;
        if token.is_empty() && is_private(config, channel) {
            return Err(Denied::error(Refusal::PrivateWithoutToken));
        }
        let user_limited = options.allow_user_limited_channels && is_user_limited(config, channel);
        let source = if !token.is_empty() {
            let claims = tokens.subscribe(token).map_err(|e| match e {
                TokenError::Expired => Denied::error(Refusal::TokenExpired),
                TokenError::Invalid(_) => Denied::error(Refusal::TokenInvalid),
                TokenError::UnknownChannel => Denied::error(Refusal::UnknownChannel),
                TokenError::Unverifiable => Denied::error(Refusal::TokenUnverifiable),
            })?;
            let mismatch = claims.channel != channel
                || claims.user != who.user
                || claims
                    .client
                    .as_deref()
                    .is_some_and(|c| c != who.client.to_string());
            if mismatch {
                return Err(Denied::Disconnect(
                    Disconnect::InvalidToken,
                    Refusal::TokenMismatch,
                ));
            }
            apply_overrides(&mut options, &claims.grant.overrides);
            Source::Token {
                grant: claims.grant,
                expires_at: claims.expires_at,
            }
        } else if user_limited && user_allowed(config, channel, who.user) {
            Source::UserLimited
        } else if options.allow_subscribe_for_client
            && (!who.anonymous() || options.allow_subscribe_for_anonymous)
            && !user_limited
        {
            Source::ClientAllowed
        } else if config.client.insecure {
            Source::Insecure
        } else {
            return Err(Denied::error(Refusal::NotAllowed));
        };
        Ok(Allowed { options, source })
    }

    /// May `who` use `feature` of `channel`? `subscribed`: is it a subscriber of it (or about
    /// to be, when a subscribe asks for recovery or positioning). The name first, then
    /// whether the feature is on (108), then its rule (103).
    pub fn may(
        &self,
        config: &Config,
        who: Asker<'_>,
        channel: &str,
        subscribed: bool,
        feature: Feature,
    ) -> Result<ChannelOptions, Denied> {
        let options = self.resolve(config, channel)?;
        let (available, rule) = match feature {
            Feature::Publish => (true, Rule::publish(&options)),
            Feature::History => (options.history(), Rule::history(&options)),
            Feature::Presence => (options.presence, Rule::presence(&options)),
        };
        if !available {
            return Err(Denied::error(Refusal::NotAvailable));
        }
        if !rule.allows(config, who, subscribed) {
            return Err(Denied::error(Refusal::NotAllowed));
        }
        Ok(options)
    }
}

/// Who may use one feature of a channel: any client, its subscribers, and anonymous ones
/// too (with one of the other two); `client.insecure` lets anyone.
#[derive(Debug, Clone, Copy)]
struct Rule {
    client: bool,
    subscriber: bool,
    anonymous: bool,
}

impl Rule {
    fn publish(o: &ChannelOptions) -> Rule {
        Rule {
            client: o.allow_publish_for_client,
            subscriber: o.allow_publish_for_subscriber,
            anonymous: o.allow_publish_for_anonymous,
        }
    }

    fn history(o: &ChannelOptions) -> Rule {
        Rule {
            client: o.allow_history_for_client,
            subscriber: o.allow_history_for_subscriber,
            anonymous: o.allow_history_for_anonymous,
        }
    }

    fn presence(o: &ChannelOptions) -> Rule {
        Rule {
            client: o.allow_presence_for_client,
            subscriber: o.allow_presence_for_subscriber,
            anonymous: o.allow_presence_for_anonymous,
        }
    }

    fn allows(self, config: &Config, who: Asker<'_>, subscribed: bool) -> bool {
        let anonymous_ok = !who.anonymous() || self.anonymous;
        ((self.client || (self.subscriber && subscribed)) && anonymous_ok) || config.client.insecure
    }
}

/// The history rule, also deciding whether a subscriber may ask for recovery or positioning
/// beyond what `allow_recovery`/`allow_positioning` give (as Centrifugo does).
pub fn history_access(
    config: &Config,
    options: &ChannelOptions,
    who: Asker<'_>,
    subscribed: bool,
) -> bool {
    Rule::history(options).allows(config, who, subscribed)
}

/// The presence rule, also deciding whether a subscriber that asks for join and leave
/// pushes gets them (as Centrifugo does).
pub fn presence_access(
    config: &Config,
    options: &ChannelOptions,
    who: Asker<'_>,
    subscribed: bool,
) -> bool {
    Rule::presence(options).allows(config, who, subscribed)
}

/// May a connection token subscribe its connection to `channel` (its `channels`/`subs`
/// claims, already checked to have a namespace)? The token is the permission; the name must
/// still be acceptable.
pub fn server_side_subscribe(access: &Access, config: &Config, channel: &str) -> bool {
    !channel.is_empty() && access.resolve(config, channel).is_ok()
}

/// The options a token overrides.
pub fn apply_overrides(options: &mut ChannelOptions, o: &SubscriptionOverrides) {
    let set = |field: &mut bool, value: Option<bool>| {
        if let Some(v) = value {
            *field = v;
        }
    };
    set(&mut options.presence, o.presence);
    set(&mut options.join_leave, o.join_leave);
    set(&mut options.force_push_join_leave, o.force_push_join_leave);
    set(&mut options.force_recovery, o.force_recovery);
    set(&mut options.force_positioning, o.force_positioning);
}

/// The part of the name a namespace's pattern applies to: after the namespace (and the
/// private prefix), or the whole name without a namespace.
fn rest_of<'a>(config: &Config, channel: &'a str) -> &'a str {
    let section = &config.channel;
    let trimmed = channel
        .strip_prefix(section.private_prefix.as_str())
        .filter(|_| !section.private_prefix.is_empty())
        .unwrap_or(channel);
    match trimmed.split_once(section.namespace_boundary.as_str()) {
        Some((_, rest)) if !section.namespace_boundary.is_empty() => rest,
        _ => channel,
    }
}

fn is_private(config: &Config, channel: &str) -> bool {
    !config.channel.private_prefix.is_empty()
        && channel.starts_with(config.channel.private_prefix.as_str())
}

fn is_user_limited(config: &Config, channel: &str) -> bool {
    !config.channel.user_boundary.is_empty()
        && channel.contains(config.channel.user_boundary.as_str())
}

/// Whether `user` is among the users a user-limited channel lists after its last boundary.
fn user_allowed(config: &Config, channel: &str, user: &str) -> bool {
    let section = &config.channel;
    let Some((_, users)) = channel.rsplit_once(section.user_boundary.as_str()) else {
        return true;
    };
    if section.user_separator.is_empty() {
        return users == user;
    }
    users
        .split(section.user_separator.as_str())
        .any(|allowed| allowed == user)
}

#[cfg(test)]
mod tests;
