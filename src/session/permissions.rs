//! Who may do what on a channel: the one place that decides it for client commands (and, with
//! the server API's own rules, later for the API). Each check returns the channel's options or
//! the reply error, in Centrifugo's order of checks.

use crate::config::{ChannelOptions, Config};
use crate::protocol::ErrorCode;

/// May a client subscribe to `channel` by itself?
pub fn subscribe(config: &Config, channel: &str) -> Result<ChannelOptions, ErrorCode> {
    if channel.len() > config.channel.max_length || !channel.is_ascii() {
        return Err(ErrorCode::BadRequest);
    }
    let options = config
        .channel_options(channel)
        .ok_or(ErrorCode::UnknownChannel)?;
    // Private channels need a subscription token, which this server does not take yet;
    // others need the client permission.
    if is_private(config, channel) || !options.allow_subscribe_for_client {
        return Err(ErrorCode::PermissionDenied);
    }
    Ok(options)
}

/// May a client publish to `channel`?
pub fn publish(config: &Config, channel: &str) -> Result<ChannelOptions, ErrorCode> {
    let options = config
        .channel_options(channel)
        .ok_or(ErrorCode::UnknownChannel)?;
    if !options.allow_publish_for_client {
        return Err(ErrorCode::PermissionDenied);
    }
    if channel.len() > config.channel.max_length {
        return Err(ErrorCode::BadRequest);
    }
    Ok(options)
}

/// May a client read `channel`'s history? `subscribed` says whether it is a subscriber.
pub fn history(config: &Config, channel: &str, subscribed: bool) -> Result<(), ErrorCode> {
    let options = config
        .channel_options(channel)
        .ok_or(ErrorCode::UnknownChannel)?;
    if !options.history() {
        return Err(ErrorCode::NotAvailable);
    }
    if options.allow_history_for_client || (options.allow_history_for_subscriber && subscribed) {
        Ok(())
    } else {
        Err(ErrorCode::PermissionDenied)
    }
}

/// May a connection token subscribe its connection to `channel` (the `channels` claim)? The
/// channel needs a configured namespace; the token is the permission.
pub fn server_side_subscribe(config: &Config, channel: &str) -> bool {
    config.channel_options(channel).is_some()
}

fn is_private(config: &Config, channel: &str) -> bool {
    !config.channel.private_prefix.is_empty()
        && channel.starts_with(config.channel.private_prefix.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn centrifugo_order_of_checks() {
        let mut config = Config::default();
        config.channel.max_length = 10;
        assert_eq!(
            subscribe(&config, "a-long-channel"),
            Err(ErrorCode::BadRequest)
        );
        assert_eq!(subscribe(&config, "ns:x"), Err(ErrorCode::UnknownChannel));
        assert_eq!(subscribe(&config, "$x"), Err(ErrorCode::PermissionDenied));
        assert!(subscribe(&config, "news").is_ok());
        assert_eq!(publish(&config, "news"), Err(ErrorCode::PermissionDenied));
        assert_eq!(history(&config, "news", true), Err(ErrorCode::NotAvailable));
        assert!(server_side_subscribe(&config, "news"));
        assert!(!server_side_subscribe(&config, "ns:x"));
    }
}
