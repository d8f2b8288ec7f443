enum KilnLoadPlaceholder {}
