//! Questions from chat (`!cv help`, `!cv list`, `!admin help`): answered from the catalogue and the
//! live routes. No event is made and nothing changes; the gate lets them through without using a
//! viewer's cooldown (only `!admin help` needs an admin).

use super::{Answer, Coordinator};
use crate::catalog::Variable;
use crate::command::{Question, help};

impl Coordinator {
    /// The lesson that answers `question` now, with the routed variables in output order.
    pub(super) fn lesson(&self, question: &Question) -> Answer {
        let routed: Vec<Variable> = self.state.routes().map(|(_, route)| route.variable.clone()).collect();
        Answer::Lesson(help::lesson(question, &self.catalog, &routed))
    }
}
