"""Tables, queries and commands: the data layer every process shares."""
