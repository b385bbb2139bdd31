-- The users of one tenant: every tenant and application tenant gets this table in
-- a schema of its own.
CREATE TABLE users (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email      text NOT NULL,
    name       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- An email names one user per tenant, whatever its case.
CREATE UNIQUE INDEX users_email ON users (lower(email));
