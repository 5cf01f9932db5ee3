"""The read side's entry: one hub per server process joins the groups its
subscribers watch and hands each change to them, latest wins."""
