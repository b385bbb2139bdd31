-- Every tenant's projects: in the shared table for the free tier (apply adds
-- tenant_id and row-level security), in the tenant's schema or database otherwise.
CREATE TABLE projects (
    id         bigserial PRIMARY KEY,
    name       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
