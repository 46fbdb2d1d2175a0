-- The daily account-creation quota counts a partner's memberships created since
-- midnight UTC (admit_store::quota).
CREATE INDEX memberships_partner_created ON memberships (partner_id, created_at);
