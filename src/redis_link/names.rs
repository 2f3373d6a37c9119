//! Channel and key names, with the deployment's prefix.

use super::wire;

/// Channel and key names. Keys share the `{cv}` hash tag so the publish script stays in one slot
/// on Redis Cluster.
#[derive(Debug, Clone)]
pub struct Names {
    prefix: String,
    instance: String,
}

impl Names {
    pub fn new(prefix: &str, instance: &str) -> Names {
        Names { prefix: prefix.to_owned(), instance: instance.to_owned() }
    }
    pub fn channel(&self, base: &str) -> String {
        format!("{}{base}", self.prefix)
    }
    pub fn state(&self) -> String {
        format!("{}{{cv}}:state", self.prefix)
    }
    pub fn history(&self) -> String {
        format!("{}{{cv}}:history", self.prefix)
    }
    pub fn dlq(&self) -> String {
        format!("{}{{cv}}:dlq", self.prefix)
    }
    pub fn claim(&self) -> String {
        format!("{}{{cv}}:instance:{}", self.prefix, self.instance)
    }
    pub fn instances(&self) -> String {
        format!("{}{{cv}}:instances", self.prefix)
    }
    /// The live instances that publish (democracy's talliers), scored like `instances`.
    pub fn talliers(&self) -> String {
        format!("{}{{cv}}:talliers", self.prefix)
    }
    /// A random token set once per data set: gone or changed means Redis lost its data.
    pub fn epoch(&self) -> String {
        format!("{}{{cv}}:epoch", self.prefix)
    }
    pub fn status_channel(&self) -> String {
        self.channel("cv:instance:status")
    }
    pub fn command_channel(&self) -> String {
        self.channel(&format!("cv:instance:{}:command", self.instance))
    }
    pub fn probe_channel(&self) -> String {
        self.channel(&format!("cv:instance:{}:probe", self.instance))
    }
    pub(super) fn event_channels(&self) -> Vec<String> {
        wire::EVENT_CHANNELS.iter().map(|c| self.channel(c)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_one_hash_tag_and_channels_keep_the_seed_names() {
        let n = Names::new("studio-a:", "bot-7");
        for key in [n.state(), n.history(), n.dlq(), n.claim(), n.instances(), n.talliers()] {
            assert!(key.starts_with("studio-a:{cv}:"), "{key}");
        }
        assert_eq!(n.channel(wire::PARAMETER_CHANNEL), "studio-a:cv:parameter:update");
        assert_eq!(n.command_channel(), "studio-a:cv:instance:bot-7:command");
        assert_eq!(Names::new("", "x").channel(wire::SYSTEM_CHANNEL), "cv:system:broadcast");
    }
}
