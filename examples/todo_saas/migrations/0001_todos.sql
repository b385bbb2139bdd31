-- The todos of every list. In the shared database all lists share this table: the
-- provisioner gives it row-level security on tenant_id. A list moved to its own
-- database gets the same table there, from the template, with the same policy.
-- Its key leads with tenant_id, so one list's rows never collide with another's.
CREATE TABLE todos (
    id         bigserial,
    tenant_id  text NOT NULL DEFAULT current_setting('tenants.tenant_id', true),
    title      text NOT NULL CHECK (length(title) BETWEEN 1 AND 500),
    done       boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
