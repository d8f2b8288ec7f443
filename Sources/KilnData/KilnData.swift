// KilnData: the dataset generator (issue 3) lands here.
