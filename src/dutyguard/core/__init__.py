"""The decision core: resources in, findings out, one evaluation function for every stage."""
