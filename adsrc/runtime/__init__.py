"""Run-time support of generated code: the tape and the checks on call arguments."""
