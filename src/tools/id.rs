//! The tools' identities: a closed set, so that a tool is named by a type rather than a string
//! everywhere past the protocol edge (routing, metrics labels, audit lines).
//!
//! This file imports nothing of the crate: the metrics and the audit trail name tools through it
//! without depending on the tools themselves.

/// One of the server's tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ToolId {
    CreatePaymentLink,
    GetPaymentLink,
    ListLineItems,
    ListProducts,
    ListPaymentLinks,
    UpdatePaymentLinkStatus,
}

impl ToolId {
    /// Every tool, in listing order.
    pub(crate) const ALL: [ToolId; 6] = [
        ToolId::CreatePaymentLink,
        ToolId::GetPaymentLink,
        ToolId::ListLineItems,
        ToolId::ListProducts,
        ToolId::ListPaymentLinks,
        ToolId::UpdatePaymentLinkStatus,
    ];

    /// The tool's name on the wire.
    pub(crate) const fn name(self) -> &'static str {
        match self {
            ToolId::CreatePaymentLink => "create_payment_link",
            ToolId::GetPaymentLink => "get_payment_link",
            ToolId::ListLineItems => "list_line_items",
            ToolId::ListProducts => "list_products",
            ToolId::ListPaymentLinks => "list_payment_links",
            ToolId::UpdatePaymentLinkStatus => "update_payment_link_status",
        }
    }

    /// The tool named `name`, if it is one of ours.
    pub(crate) fn from_name(name: &str) -> Option<ToolId> {
        ToolId::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Whether the tool changes anything upstream: hidden by `--read-only`, recorded in the
    /// audit trail.
    pub(crate) const fn writes(self) -> bool {
        matches!(
            self,
            ToolId::CreatePaymentLink | ToolId::UpdatePaymentLinkStatus
        )
    }
}

impl std::fmt::Display for ToolId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_only_the_two_writers_write() {
        for id in ToolId::ALL {
            assert_eq!(ToolId::from_name(id.name()), Some(id));
        }
        assert_eq!(ToolId::from_name("refund_everything"), None);
        let writers: Vec<_> = ToolId::ALL.into_iter().filter(|t| t.writes()).collect();
        assert_eq!(
            writers,
            [ToolId::CreatePaymentLink, ToolId::UpdatePaymentLinkStatus]
        );
    }
}
