-- Every tenant's projects: in the shared table for the free tier (apply gives it
-- row-level security), in the tenant's schema or database otherwise. Keys lead
-- with tenant_id, so one tenant's rows never collide with another's.
CREATE TABLE projects (
    id         bigserial,
    tenant_id  text NOT NULL DEFAULT current_setting('tenants.tenant_id', true),
    name       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
