//! Who sent a Twitch message, as far as permissions go: badges and ids to a [`Sender`]; whether the bot
//! itself is a moderator of a channel (for the reply rate limit); and the message-id memory that drops
//! a message delivered twice.
//!
//! Pure: no I/O, no clock, no tokio. Knows twitch-irc's message types and the gate's `Sender`, nothing
//! of connections, the coordinator or replies.

use std::collections::{HashSet, VecDeque};

use twitch_irc::message::{Badge, PrivmsgMessage, UserStateMessage};

use crate::gate::Sender;

/// Badges that give moderator rights. `lead_moderator` is Twitch's newer badge for a head moderator;
/// it replaces `moderator` on that user's messages, so it must count too.
const MODERATOR_BADGES: [&str; 2] = ["moderator", "lead_moderator"];

/// The sender of a chat message with the roles Twitch vouches for.
///
/// * broadcaster: the `broadcaster` badge, or the sender's user id equal to the channel's room id (the
///   badge can be hidden, the ids cannot);
/// * moderator: a moderator or lead-moderator badge, or the `mod=1` tag;
/// * VIP: the `vip` badge, or the `vip` tag (Twitch sends that tag only when it is true);
/// * subscriber: a `subscriber` or `founder` badge, or the `subscriber=1` tag.
pub fn sender_of(msg: &PrivmsgMessage) -> Sender {
    let tag = |name: &str| msg.source.tags.0.get(name).map(String::as_str);
    let id = msg.sender.id.as_str();
    Sender {
        login: msg.sender.login.to_ascii_lowercase(),
        user_id: (!id.is_empty()).then(|| id.to_owned()),
        broadcaster: has(&msg.badges, "broadcaster") || (!id.is_empty() && id == msg.channel_id),
        moderator: MODERATOR_BADGES.iter().any(|b| has(&msg.badges, b)) || tag("mod") == Some("1"),
        vip: has(&msg.badges, "vip") || tag("vip").is_some(),
        subscriber: has(&msg.badges, "subscriber") || has(&msg.badges, "founder") || tag("subscriber") == Some("1"),
        operator: false,
    }
}

/// True when the bot is the broadcaster or a moderator of the channel this USERSTATE is about, which
/// raises Twitch's limit on what it may say there (100 instead of 20 messages per 30 seconds).
pub fn bot_is_elevated(msg: &UserStateMessage) -> bool {
    has(&msg.badges, "broadcaster")
        || MODERATOR_BADGES.iter().any(|b| has(&msg.badges, b))
        || msg.source.tags.0.get("mod").is_some_and(|v| v == "1")
}

fn has(badges: &[Badge], name: &str) -> bool {
    badges.iter().any(|b| b.name == name)
}

/// The last [`RecentIds::CAPACITY`] message ids, to drop a message Twitch delivers twice (a reconnect
/// can overlap two connections for a moment). Bounded: the oldest id is forgotten first.
#[derive(Debug, Default)]
pub struct RecentIds {
    set: HashSet<String>,
    order: VecDeque<String>,
}

impl RecentIds {
    /// Far more than a reconnect overlap delivers twice, small enough to cost nothing (~400 KiB).
    pub const CAPACITY: usize = 4096;

    /// Remembers `id`; false when it was already seen (a duplicate). An empty id is never a duplicate.
    pub fn first_time(&mut self, id: &str) -> bool {
        if id.is_empty() {
            return true;
        }
        if self.set.contains(id) {
            return false;
        }
        if self.order.len() >= Self::CAPACITY
            && let Some(oldest) = self.order.pop_front()
        {
            self.set.remove(&oldest);
        }
        self.set.insert(id.to_owned());
        self.order.push_back(id.to_owned());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use twitch_irc::message::{IRCMessage, ServerMessage};

    fn server_message(line: &str) -> ServerMessage {
        let irc = IRCMessage::parse(line).expect("valid IRC");
        ServerMessage::try_from(irc).expect("a Twitch message")
    }

    fn privmsg(line: &str) -> PrivmsgMessage {
        match server_message(line) {
            ServerMessage::Privmsg(m) => m,
            other => panic!("not a PRIVMSG: {other:?}"),
        }
    }

    /// Roles as "login id flags", flags being the letters of broadcaster, moderator, vip, subscriber.
    fn roles(line: &str) -> String {
        let s = sender_of(&privmsg(line));
        let flags: String = [(s.broadcaster, 'b'), (s.moderator, 'm'), (s.vip, 'v'), (s.subscriber, 's')]
            .iter()
            .filter_map(|(on, c)| on.then_some(*c))
            .collect();
        format!("{} {} {flags}", s.login, s.user_id.unwrap_or_default())
    }

    // Lines in the exact format Twitch sends (tags as captured from real chat, names changed).
    const VIEWER: &str = "@badge-info=;badges=;client-nonce=b9f1c2;color=#1E90FF;display-name=SomeViewer;emotes=;first-msg=0;flags=;id=0f4a9b3e-1c2d-4e5f-8a9b-0c1d2e3f4a5b;mod=0;returning-chatter=0;room-id=11148817;subscriber=0;tmi-sent-ts=1700000000000;turbo=0;user-id=29803735;user-type= :someviewer!someviewer@someviewer.tmi.twitch.tv PRIVMSG #pajlada :doorway#1.threshold: 89";
    const MODERATOR: &str = "@badge-info=;badges=moderator/1,partner/1;color=#FF0000;display-name=ModPerson;emotes=;flags=;id=1a2b3c4d-0000-4000-8000-000000000001;mod=1;room-id=11148817;subscriber=0;tmi-sent-ts=1700000000001;turbo=0;user-id=40286300;user-type=mod :modperson!modperson@modperson.tmi.twitch.tv PRIVMSG #pajlada :!admin clear";
    const LEAD_MODERATOR: &str = "@badge-info=;badges=lead_moderator/1;color=;display-name=HeadMod;emotes=;flags=;id=1a2b3c4d-0000-4000-8000-000000000002;mod=0;room-id=11148817;subscriber=0;tmi-sent-ts=1700000000002;turbo=0;user-id=40286301;user-type= :headmod!headmod@headmod.tmi.twitch.tv PRIVMSG #pajlada :!admin resume";
    const BROADCASTER: &str = "@badge-info=subscriber/22;badges=broadcaster/1,subscriber/3012;color=#CC44FF;display-name=pajlada;emotes=;flags=;id=1a2b3c4d-0000-4000-8000-000000000003;mod=0;room-id=11148817;subscriber=1;tmi-sent-ts=1700000000003;turbo=0;user-id=11148817;user-type= :pajlada!pajlada@pajlada.tmi.twitch.tv PRIVMSG #pajlada :!admin overlay off";
    const HIDDEN_BADGE_BROADCASTER: &str = "@badge-info=;badges=;color=;display-name=pajlada;emotes=;flags=;id=1a2b3c4d-0000-4000-8000-000000000004;mod=0;room-id=11148817;subscriber=0;tmi-sent-ts=1700000000004;turbo=0;user-id=11148817;user-type= :pajlada!pajlada@pajlada.tmi.twitch.tv PRIVMSG #pajlada :!admin routes";
    const VIP_SUB: &str = "@badge-info=subscriber/12;badges=vip/1,subscriber/12;color=#00FF7F;display-name=Fancy\\sFan;emotes=25:0-4;flags=;id=1a2b3c4d-0000-4000-8000-000000000005;mod=0;room-id=11148817;subscriber=1;tmi-sent-ts=1700000000005;turbo=0;user-id=55555;user-type=;vip=1 :fancyfan!fancyfan@fancyfan.tmi.twitch.tv PRIVMSG #pajlada :Kappa !admin clear";
    const FOUNDER_ACTION: &str = "@badge-info=founder/5;badges=founder/0;color=;display-name=OldFan;emotes=;flags=;id=1a2b3c4d-0000-4000-8000-000000000006;mod=0;room-id=11148817;subscriber=1;tmi-sent-ts=1700000000006;turbo=0;user-id=66666;user-type= :oldfan!oldfan@oldfan.tmi.twitch.tv PRIVMSG #pajlada :\u{1}ACTION doorway#1.gain: 5\u{1}";

    #[test]
    fn roles_come_from_badges_tags_and_ids() {
        let cases = [
            (VIEWER, "someviewer 29803735 "),
            (MODERATOR, "modperson 40286300 m"),
            (LEAD_MODERATOR, "headmod 40286301 m"),
            (BROADCASTER, "pajlada 11148817 bs"),
            (HIDDEN_BADGE_BROADCASTER, "pajlada 11148817 b"),
            (VIP_SUB, "fancyfan 55555 vs"),
            (FOUNDER_ACTION, "oldfan 66666 s"),
        ];
        for (line, expected) in cases {
            assert_eq!(roles(line), expected, "{line}");
        }
    }

    #[test]
    fn escaped_tags_emotes_and_actions_reach_us_as_plain_text() {
        let vip = privmsg(VIP_SUB);
        assert_eq!(vip.sender.name, "Fancy Fan", "\\s in a tag value is a space");
        assert_eq!(vip.emotes.len(), 1);
        assert_eq!(vip.message_text, "Kappa !admin clear");
        let action = privmsg(FOUNDER_ACTION);
        assert!(action.is_action);
        assert_eq!(action.message_text, "doorway#1.gain: 5", "/me text is the command itself");
    }

    #[test]
    fn the_bot_is_elevated_where_userstate_shows_a_moderator_or_broadcaster_badge() {
        let state = |badges: &str, m: u8| {
            let line = format!(
                "@badge-info=;badges={badges};color=;display-name=CvBot;emote-sets=0,300374282;mod={m};subscriber=0;user-type= :tmi.twitch.tv USERSTATE #pajlada"
            );
            match server_message(&line) {
                ServerMessage::UserState(u) => bot_is_elevated(&u),
                other => panic!("not USERSTATE: {other:?}"),
            }
        };
        assert!(!state("", 0));
        assert!(!state("vip/1", 0));
        assert!(state("moderator/1", 1));
        assert!(state("lead_moderator/1", 0));
        assert!(state("broadcaster/1", 0));
    }

    #[test]
    fn recent_ids_drop_duplicates_and_forget_the_oldest() {
        let mut ids = RecentIds::default();
        assert!(ids.first_time("a"));
        assert!(!ids.first_time("a"));
        assert!(ids.first_time(""));
        assert!(ids.first_time(""), "no id, no de-duplication");
        for i in 0..RecentIds::CAPACITY {
            assert!(ids.first_time(&i.to_string()));
        }
        assert!(ids.first_time("a"), "the oldest id was forgotten");
        assert!(!ids.first_time(&(RecentIds::CAPACITY - 1).to_string()));
        assert!(ids.set.len() <= RecentIds::CAPACITY && ids.order.len() == ids.set.len());
    }
}
