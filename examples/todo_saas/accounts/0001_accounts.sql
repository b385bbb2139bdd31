-- Who may use which list: central data of the application, in schema `accounts`,
-- read and written outside any tenant (it decides which tenants a token lists).
CREATE TABLE users (
    id            bigserial PRIMARY KEY,
    email         text NOT NULL UNIQUE,
    password_hash text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE lists (
    id         text PRIMARY KEY,
    name       text NOT NULL,
    owner_id   bigint NOT NULL REFERENCES users (id),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE members (
    list_id text NOT NULL REFERENCES lists (id) ON DELETE CASCADE,
    user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role    text NOT NULL CHECK (role IN ('owner', 'member')),
    PRIMARY KEY (list_id, user_id)
);
CREATE INDEX members_user_id ON members (user_id);
