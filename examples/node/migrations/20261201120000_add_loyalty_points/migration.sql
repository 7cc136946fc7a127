-- Guests collect loyalty points per stay.
ALTER TABLE users ADD COLUMN loyalty_points INTEGER NOT NULL DEFAULT 0;
CREATE INDEX users_loyalty_points ON users(loyalty_points);
