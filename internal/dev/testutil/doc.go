// Package testutil holds the few helpers every test package needs: waiting for a
// condition with a deadline, and running a component until the test ends.
//
// Tests wait on conditions, never on sleeps: Eventually polls, and its deadline is an
// upper bound for a noisy machine, not a timing the test asserts. Only tests import
// this package.
package testutil
