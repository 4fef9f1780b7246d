"""Work orders: the grid worker's app, steps on alerts and complaints, response times."""
